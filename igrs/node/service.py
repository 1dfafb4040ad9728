"""The application model of an IGRS service: a Python class with typed actions and attributes.

    class Light(Service):
        service_type = "urn:IGRS:ServiceType:Light:1"
        name = "Living-room light"
        level = attribute(int, 0, notifiable=True)

        @action
        async def SetLevel(self, level: int) -> int:
            self.level = max(0, min(100, level))
            return self.level

Types allowed for parameters, results and attributes: ``int``, ``float``, ``bool``, ``str``,
``bytes``, ``list[T]`` and ``dict[str, T]`` of those (specs/services.md "Typed values").
The WSDL description (clause 10.4) is generated from the class: ``Light.describe(3)``.
"""

from __future__ import annotations

import copy
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from igrs.constants import MAX_ARGUMENTS, ReturnCode
from igrs.errors import IGRSError, ProtocolError
from igrs.wire.ids import ServiceType
from igrs.wire.lazy_import import lazy_import

if TYPE_CHECKING:
    from igrs.wire.bodies import services as sv
    from igrs.wire.bodies import sessions as ss
    from igrs.wire.bodies.services import ActionDesc, AttributeDesc, ServiceDescription
    from igrs.wire.bodies.sessions import NamedValues, RpcCall, Value
else:  # the service and session bodies load with the first service defined or message read
    sv = lazy_import("igrs.wire.bodies.services")
    ss = lazy_import("igrs.wire.bodies.sessions")

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCALARS: dict[type, str] = {int: "int", float: "float", bool: "bool", str: "string", bytes: "bytes"}


class ArgumentError(IGRSError):
    """Arguments that do not fit an action's signature (ReturnCode 400)."""

    return_code = ReturnCode.BAD_MESSAGE


# --- types ----------------------------------------------------------------------------------
def type_expr(tp: Any) -> str:
    """The wire type expression of a Python annotation; TypeError if not supported."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and len(args) == 1:
        return f"list[{type_expr(args[0])}]"
    if origin is dict and len(args) == 2 and args[0] is str:
        return f"dict[{type_expr(args[1])}]"
    raise TypeError(f"unsupported IGRS type {tp!r} (int, float, bool, str, bytes, list[T], dict[str, T])")


def convert(value: object, tp: Any, where: str) -> Value:
    """Check ``value`` (decoded from the wire) against ``tp``; ArgumentError if it does not fit.
    Bare text (an RPC-style argument without a type, ``BareText``) is read as ``tp``."""
    if isinstance(value, ss.BareText):
        if tp is str:
            return str(value)
        try:
            value = ss.value_from_text(value, type_expr(tp))
        except ProtocolError as exc:
            raise ArgumentError(f"{where}: {exc.reason}") from None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is bytes:
        if isinstance(value, bytes | bytearray):
            return bytes(value)
    else:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is list and isinstance(value, list | tuple):
            return [convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        if origin is dict and isinstance(value, dict):
            return {k: convert(v, args[1], f"{where}[{k!r}]") for k, v in value.items()}
    got = {
        bool: "bool",
        int: "int",
        float: "float",
        str: "string",
        bytes: "bytes",
        list: "list",
        dict: "dict",
    }.get(type(value), type(value).__name__)
    raise ArgumentError(f"{where}: expected {type_expr(tp)}, got {got}")


# --- actions --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Any
    required: bool
    default: Any = None


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    func: Callable[..., Awaitable[Any]]
    params: tuple[Param, ...]
    result: Any  # annotation, or None
    names: frozenset[str] = field(init=False, repr=False, compare=False)  # of params: bind's check
    # (param, "Action.param") and "Action result": bind's and invoke's error labels, made once
    labelled: tuple[tuple[Param, str], ...] = field(init=False, repr=False, compare=False)
    result_label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(p.name for p in self.params))
        object.__setattr__(self, "labelled", tuple((p, f"{self.name}.{p.name}") for p in self.params))
        object.__setattr__(self, "result_label", f"{self.name} result")

    def describe(self) -> ActionDesc:
        params = tuple(sv.ParamDesc(p.name, type_expr(p.type), p.required) for p in self.params)
        return sv.ActionDesc(self.name, params, None if self.result is None else type_expr(self.result))

    def bind(self, arguments: tuple[tuple[str, Value], ...]) -> dict[str, Any]:
        """Validate and convert wire arguments to keyword arguments (ArgumentError: 400)."""
        given = dict(arguments)
        if not self.names.issuperset(given):
            extra = sorted(set(given) - self.names)
            raise ArgumentError(f"{self.name}: unexpected argument {extra[0]!r}")
        kwargs: dict[str, Any] = {}
        for p, label in self.labelled:
            if p.name in given:
                kwargs[p.name] = convert(given[p.name], p.type, label)
            elif p.required:
                raise ArgumentError(f"{self.name}: missing argument {p.name!r}")
        return kwargs


_ACTION_MARK = "__igrs_action__"
AsyncFn = Callable[..., Awaitable[Any]]


@overload
def action(func: AsyncFn) -> AsyncFn: ...
@overload
def action(*, name: str | None = None) -> Callable[[AsyncFn], AsyncFn]: ...


def action(func: Any = None, *, name: str | None = None) -> Any:
    """Mark an ``async def`` method as an IGRS action (its annotations give the wire types)."""

    def mark(f: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"@action {f.__name__} must be an async def")
        setattr(f, _ACTION_MARK, name or f.__name__)
        return f

    return mark(func) if func is not None else mark


def _action_spec(owner: type, func: Callable[..., Awaitable[Any]], name: str) -> ActionSpec:
    ss.check_name(name, "action name")
    if name in sv.STANDARD_OPERATIONS:
        raise TypeError(f"{name} is a standard IGRS operation and cannot be an action")
    hints = typing.get_type_hints(func)
    params = []
    for pname, p in list(inspect.signature(func).parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise TypeError(f"{owner.__name__}.{name}: *args, **kwargs and positional-only are not allowed")
        if pname not in hints:
            raise TypeError(f"{owner.__name__}.{name}: parameter {pname} needs a type annotation")
        type_expr(hints[pname])
        ss.check_name(pname, "parameter name")
        required = p.default is inspect.Parameter.empty
        params.append(Param(pname, hints[pname], required, None if required else p.default))
    if len(params) > MAX_ARGUMENTS:
        raise TypeError(f"{owner.__name__}.{name}: more than {MAX_ARGUMENTS} parameters")
    result = hints.get("return")
    if result is type(None):
        result = None
    if result is not None:
        type_expr(result)
    return ActionSpec(name, func, tuple(params), result)


# --- RPC-style invocations (no operation name) ----------------------------------------------
def resolve_call(actions: dict[str, ActionSpec], call: RpcCall,
                 standard: frozenset[str] = frozenset()) -> tuple[str, NamedValues]:
    """The operation and arguments an InvokeServiceRequest without ``ActionName`` means
    (specs/services.md §3.1), among ``actions`` and the ``standard`` operations:

    1. the one element child of InvokeArguments, when it names one of them (its children are
       the arguments);
    2. else the service's only action (InvokeArguments' children, or its bare text for a
       one-parameter action, are the arguments);
    3. else the one action whose parameters take the argument names given (all its required
       ones among them). Several: 400 naming them; none: 404 for a named operation, else 400.
    """
    if call.operation and call.operation_arguments is not None and (
            call.operation in actions or call.operation in standard):
        return call.operation, call.operation_arguments
    arguments = call.arguments
    if arguments is None and call.operation:
        raise IGRSError(f"no action {call.operation!r}", return_code=ReturnCode.NOT_FOUND)
    if arguments is None:
        raise ArgumentError("InvokeArguments names no operation and holds no readable arguments")
    if len(actions) == 1:
        (only,) = actions.values()
        if call.text and not arguments:
            if len(only.params) != 1:
                raise ArgumentError(f"{only.name}: bare text where {len(only.params)} arguments are expected")
            return only.name, ((only.params[0].name, ss.BareText(call.text)),)
        return only.name, arguments
    given = {name for name, _ in arguments}
    fits = sorted(a.name for a in actions.values()
                  if given <= {p.name for p in a.params} and {p.name for p in a.params if p.required} <= given)
    if len(fits) == 1:
        return fits[0], arguments
    shown = ", ".join(sorted(given)) or "none"
    if fits:
        raise ArgumentError(f"ambiguous invocation: the arguments ({shown}) fit the actions "
                            f"{', '.join(fits)}; name the operation")
    if call.operation:
        raise IGRSError(f"no action {call.operation!r}", return_code=ReturnCode.NOT_FOUND)
    raise ArgumentError(f"no action takes the arguments ({shown})")


# --- attributes -----------------------------------------------------------------------------
class attribute(Generic[T]):
    """A service attribute: readable with findServiceAttribute; evented when ``notifiable``.

    ``mutability="static"`` attributes keep the value they have when the service is added to
    a host (assignments afterwards raise AttributeError) and cannot be notifiable.
    """

    def __init__(
        self, type_: type[T] | Any, default: T, *, notifiable: bool = False, mutability: str = "dynamic"
    ) -> None:
        if mutability not in ("static", "dynamic"):
            raise ValueError("mutability must be 'static' or 'dynamic'")
        if notifiable and mutability == "static":
            raise ValueError("a static attribute cannot be notifiable")
        self.type = type_
        self.expr = type_expr(type_)
        self.default = convert(default, type_, "default")
        self.notifiable = notifiable
        self.mutability = mutability
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        ss.check_name(name, "attribute name")
        if name in sv.STANDARD_ATTRIBUTES:
            raise TypeError(f"{name} is a standard IGRS attribute")
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> attribute[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...

    def __get__(self, obj: object | None, owner: type) -> Any:
        if obj is None:
            return self
        store = obj.__dict__
        if self.name not in store:
            store[self.name] = copy.deepcopy(self.default)
        return store[self.name]

    def __set__(self, obj: object, value: T) -> None:
        try:
            converted = convert(value, self.type, self.name)
        except ArgumentError as exc:
            raise TypeError(exc.reason) from None
        if self.mutability == "static" and getattr(obj, "_igrs_listener", None) is not None:
            raise AttributeError(f"{self.name} is static")
        old = obj.__dict__.get(self.name, self.default)
        obj.__dict__[self.name] = converted
        listener = getattr(obj, "_igrs_listener", None)
        if self.notifiable and listener is not None and old != converted:
            listener(self.name, copy.deepcopy(converted))

    def describe(self) -> AttributeDesc:
        return sv.AttributeDesc(self.name, self.expr, self.mutability, self.notifiable)


# --- the service base class -----------------------------------------------------------------
class Service:
    """Base class of an IGRS service; subclasses set ``service_type`` and ``name``."""

    service_type: ClassVar[str] = ""
    name: ClassVar[str] = ""
    security_ids: ClassVar[tuple[str, ...]] = ()
    igrs_actions: ClassVar[dict[str, ActionSpec]] = {}
    igrs_attributes: ClassVar[dict[str, attribute[Any]]] = {}
    _igrs_listener: Callable[[str, Any], None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.service_type:
            ServiceType.parse(cls.service_type)  # ProtocolError if malformed
        actions: dict[str, ActionSpec] = {}
        attributes: dict[str, attribute[Any]] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                if isinstance(value, attribute):
                    attributes[value.name] = value
                marked = getattr(value, _ACTION_MARK, None)
                if marked is not None and callable(value):
                    actions[marked] = _action_spec(cls, value, marked)
        cls.igrs_actions = actions
        cls.igrs_attributes = attributes

    @classmethod
    def describe(cls, service_id: int) -> ServiceDescription:
        """The service description (clause 10.4) of this class hosted under ``service_id``."""
        if not cls.service_type:
            raise TypeError(f"{cls.__name__} has no service_type")
        return sv.ServiceDescription(
            cls.service_type,
            cls.name or cls.__name__,
            service_id,
            tuple(a.describe() for a in cls.igrs_actions.values()),
            tuple(a.describe() for a in cls.igrs_attributes.values()),
            tuple(cls.security_ids),
        )

    @classmethod
    def wsdl(cls, service_id: int) -> bytes:
        """The WSDL 1.1 document of :meth:`describe`."""
        return cls.describe(service_id).to_bytes()

    def attribute_value(self, name: str) -> Value:
        spec = self.igrs_attributes.get(name)
        if spec is None:
            raise KeyError(name)
        return copy.deepcopy(getattr(self, name))

    async def invoke(self, name: str, arguments: tuple[tuple[str, Value], ...]) -> Value | None:
        """Run action ``name``: 404 if unknown, 400 if the arguments do not fit, 500 if the
        result does not fit its annotation; exceptions of the action itself propagate."""
        spec = self.igrs_actions.get(name)
        if spec is None:
            raise IGRSError(f"no action {name!r}; its actions: {', '.join(self.igrs_actions) or 'none'}",
                            return_code=ReturnCode.NOT_FOUND)
        kwargs = spec.bind(arguments)
        result = await spec.func(self, **kwargs)
        if spec.result is None:
            return None
        try:
            return convert(result, spec.result, spec.result_label)
        except ArgumentError as exc:
            raise IGRSError(exc.reason, return_code=ReturnCode.INTERNAL_ERROR) from None


__all__ = ["ActionSpec", "ArgumentError", "Service", "action", "attribute", "convert", "resolve_call",
           "type_expr"]
