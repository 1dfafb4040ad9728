-- Prosody configuration for IGRS 2.0 over XMPP (specs/relay-xmpp.md, "Deployment").
-- Rendered by igrs.xmpp.deploy.render_prosody(): placeholders (dollar, brace, name) are filled in.
-- Prosody 0.12 (Debian bookworm). Small homes: one process, no clustering.

pidfile = "${pidfile}"
data_path = "${data_dir}"
run_as_root = ${run_as_root}
daemonize = false
log = { ${log} }

interfaces = { "${interface}" }
c2s_ports = { ${c2s_port} }
component_ports = { ${component_port} }
component_interfaces = { "${interface}" }
http_ports = { }
https_ports = { }
c2s_direct_tls_ports = { }

-- Nagle off: with it on, one-at-a-time device traffic waits for the delayed ACK (about 4x
-- fewer messages/s measured, shared/reference/xmpp-binding.md §4). Opportunistic writes off:
-- every stanza goes through the same write path, so order and latency do not depend on load.
network_settings = { nagle = false; opportunistic_writes = false }

modules_enabled = {
  "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "message"; "iq";
  "offline";   -- XEP-0160 NORMAL messages to offline parties
  "smacks";    -- XEP-0198 stream management, short resume window below
  "mam";       -- XEP-0313 catch-up after a fresh login inside the resume window
  "pep";       -- XEP-0163 online storage, presence/whitelist access
  "blocklist"; "carbons"; "limits"; "time"; "uptime"; "version";
  ${register_module}
  -- IGRS modules shipped beside this file (specs/relay-xmpp-server.md): only related parties
  -- reach each other (messages, IQs, presence), and the bind component's roster writer.
  "igrs_strangers"; "igrs_roster_admin";
}
plugin_paths = { "${plugin_dir}" }
igrs_component = "${igrs_component}"
modules_disabled = { "s2s"; "dialback"; "bosh"; "websocket"; "http"; "posix" }

-- Accounts: SCRAM (internal_hashed stores only salted hashes), TLS required.
authentication = "internal_hashed"
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
ssl = { certificate = "${cert}"; key = "${key}"; protocol = "tlsv1_2+" }

-- In-band registration (XEP-0077), switchable; registrations from the loopback/whitelist
-- are not throttled.
allow_registration = ${allow_registration}
min_seconds_between_registrations = 0
registration_throttle_max = ${registration_throttle_max}
registration_throttle_period = 60

-- A short XEP-0198 resume window: a crashed device looks online for at most this long
-- (the 0.12 default is 600 s, beyond the relay's 90 s detection bound).
smacks_hibernation_time = ${resume_window}
smacks_max_unacked_stanzas = 64
smacks_max_hibernated_sessions = 10000

-- MAM: archive everything for the owner, keep a week; the client de-duplicates by stanza-id.
default_archive_policy = true
archive_expires_after = "1w"
max_archive_query_results = 200

-- Limits: stanza size and per-connection rate (mod_limits).
c2s_stanza_size_limit = 262144
limits = { c2s = { rate = "512kb/s"; burst = "2s" } }
max_user_offline_messages = 1000

VirtualHost "${domain}"

${component_block}
