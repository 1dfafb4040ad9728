"""The shipped server configurations (Prosody, ejabberd) and a renderer for them.

The templates beside this file are the deployment documentation in executable form
(specs/relay-xmpp.md, "Deployment"); tests start throw-away servers from the same files, so
what is shipped is what is tested. Rendering only substitutes ``${name}`` placeholders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from string import Template

PLUGIN_DIR = Path(__file__).resolve().parent  # Prosody modules mod_igrs_*.lua (plugin_paths)
DEFAULT_RESUME_WINDOW = 20  # s, XEP-0198 resume window (project choice, specs/relay-xmpp.md)


def _template(name: str) -> Template:
    return Template(resources.files(__package__).joinpath(name).read_text("utf-8"))


def render_prosody(
    *,
    domain: str,
    data_dir: str | Path,
    cert: str | Path,
    key: str | Path,
    c2s_port: int = 5222,
    interface: str = "*",
    component_domain: str | None = None,
    component_secret: str | None = None,
    component_port: int = 5347,
    allow_registration: bool = False,
    registration_throttle_max: int = 10,
    resume_window: int = DEFAULT_RESUME_WINDOW,
    pidfile: str | Path | None = None,
    log: str = 'warn = "*console"',
    run_as_root: bool = False,
) -> str:
    """Prosody's config text; a component block is added when a component secret is given."""
    block = ""
    if component_domain and component_secret:
        block = f'Component "{component_domain}"\n  component_secret = "{component_secret}"\n'
    return _template("prosody.cfg.lua").substitute(
        domain=domain, data_dir=str(data_dir), cert=str(cert), key=str(key),
        c2s_port=c2s_port, interface=interface, component_port=component_port,
        component_block=block, allow_registration=str(allow_registration).lower(),
        register_module='"register";' if allow_registration else "",
        registration_throttle_max=registration_throttle_max, resume_window=resume_window,
        pidfile=str(pidfile or Path(data_dir) / "prosody.pid"), log=log,
        run_as_root=str(run_as_root).lower(),
        plugin_dir=str(PLUGIN_DIR), igrs_component=component_domain or f"igrs.{domain}",
    )


def render_ejabberd(
    *,
    domain: str,
    certbundle: str | Path,
    c2s_port: int = 5222,
    interface: str = "::",
    component_domain: str | None = None,
    component_secret: str | None = None,
    component_port: int = 5347,
    allow_registration: bool = False,
    resume_window: int = DEFAULT_RESUME_WINDOW,
    registration_timeout: int | str = 600,
    loglevel: str = "warning",
    api_port: int = 5281,
) -> str:
    """ejabberd's config text (certbundle: one PEM with the key and the certificate chain)."""
    return _template("ejabberd.yml").substitute(
        domain=domain, certbundle=str(certbundle), c2s_port=c2s_port, interface=interface,
        component_domain=component_domain or f"igrs.{domain}",
        component_secret=component_secret or "unused-" + domain,
        component_port=component_port, register_access="all" if allow_registration else "none",
        resume_window=resume_window, loglevel=loglevel, registration_timeout=registration_timeout,
        api_port=api_port,
    )
