"""template.yaml as data: loading (CloudFormation short tags), intrinsic resolution, typed views.

The local stack is built from the template itself so local and cloud cannot drift. This module
knows nothing about endpoints: ``Template.resolve`` takes the physical values of resources from a
``PhysicalLookup`` that the provisioner fills in as it creates things.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

NO_VALUE = object()  # AWS::NoValue: the property is removed


class TemplateError(ValueError):
    """The template cannot be read or uses something this module does not resolve."""


# --------------------------------------------------------------------------- loading


def load_template_dict(path: str | Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML with short tags, or JSON) into plain dicts.

    Uses cfn-lint's decoder, which turns ``!Ref``/``!GetAtt``/``!Sub``... into their long forms.
    """
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if template is None or matches:
        raise TemplateError(f"cannot parse {path}: {[str(m) for m in matches or []]}")
    return _plain(template)


def _plain(value: Any) -> Any:
    """cfn-lint's node classes -> plain dict/list/str."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


# --------------------------------------------------------------------------- typed views


@dataclass(frozen=True)
class SqsEventSource:
    name: str
    queue_logical_id: str
    batch_size: int
    report_batch_item_failures: bool
    maximum_batching_window_seconds: int = 0
    enabled: bool = True


@dataclass(frozen=True)
class ScheduleEventSource:
    name: str
    expression: str
    enabled: bool = True

    @property
    def interval_seconds(self) -> float | None:
        """Seconds of a ``rate(...)`` expression; None for ``cron(...)``."""
        match = re.fullmatch(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)", self.expression.strip())
        if not match:
            return None
        unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
        return float(int(match.group(1)) * unit)


@dataclass(frozen=True)
class HttpRoute:
    name: str
    method: str
    path: str
    api_logical_id: str

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function, as the runner plays it."""

    logical_id: str
    code_uri: str
    handler: str
    module: str  # importable module path, e.g. services.batch_api.api
    function_name: str  # attribute of the module, e.g. lambda_handler
    timeout: int
    memory_size: int
    environment_raw: Mapping[str, Any]  # after the Globals merge, before intrinsic resolution
    sqs_events: tuple[SqsEventSource, ...] = ()
    schedules: tuple[ScheduleEventSource, ...] = ()
    http_routes: tuple[HttpRoute, ...] = ()
    other_events: tuple[tuple[str, str], ...] = ()  # (event name, type) the local stack does not play

    @property
    def code_dir(self) -> Path:
        return REPO_ROOT / self.code_uri

    @property
    def handler_path(self) -> Path:
        return self.code_dir / (self.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")


@dataclass(frozen=True)
class Reference:
    """A Ref or GetAtt found in a value: (logical id, attribute or None for Ref)."""

    logical_id: str
    attribute: str | None = None


class PhysicalLookup:
    """What the resolver needs to know about a resource once it exists (or is played)."""

    def ref(self, logical_id: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def get_att(self, logical_id: str, attribute: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class DictLookup(PhysicalLookup):
    """refs[logical_id] and attrs[logical_id][attribute]."""

    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)

    def ref(self, logical_id: str) -> str:
        try:
            return self.refs[logical_id]
        except KeyError:
            raise TemplateError(f"Ref {logical_id}: resource not provisioned (yet)") from None

    def get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self.attrs[logical_id][attribute]
        except KeyError:
            raise TemplateError(
                f"GetAtt {logical_id}.{attribute}: unknown attribute or not provisioned"
            ) from None


_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class Template:
    """A parsed template plus parameter values and pseudo parameters."""

    def __init__(
        self,
        raw: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        partition: str = "aws",
        stack_name: str = "smgt-local",
        path: Path | None = None,
    ) -> None:
        self.raw = raw
        self.path = path
        self.region = region
        self.account_id = account_id
        self.partition = partition
        self.stack_name = stack_name
        declared = raw.get("Parameters", {}) or {}
        unknown = set(parameters or {}) - set(declared)
        if unknown:
            raise TemplateError(f"unknown parameters: {sorted(unknown)}")
        self.parameters: dict[str, str] = {}
        for name, spec in declared.items():
            if parameters and name in parameters:
                value = parameters[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default and no value was given")
            self.parameters[name] = _param_str(value)
        self._conditions: dict[str, bool] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, path: str | Path = TEMPLATE_PATH, **kwargs: Any) -> Template:
        return cls(load_template_dict(path), path=Path(path), **kwargs)

    def with_account(self, account_id: str, region: str | None = None) -> Template:
        return Template(
            self.raw,
            parameters=self.parameters,
            region=region or self.region,
            account_id=account_id,
            partition=self.partition,
            stack_name=self.stack_name,
            path=self.path,
        )

    # ------------------------------------------------------------------ conditions and resources

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.raw.get("Conditions", {}) or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self._eval_condition(conditions[name]))
        return self._conditions[name]

    def _eval_condition(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Fn::Equals":
                a, b = (self._eval_condition(v) for v in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self._eval_condition(arg[0])
            if key == "Fn::And":
                return all(self._eval_condition(v) for v in arg)
            if key == "Fn::Or":
                return any(self._eval_condition(v) for v in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Ref":
                return self._ref_parameter_or_pseudo(arg)
            if key == "Fn::FindInMap":
                return self._find_in_map(arg, self._eval_condition)
        return value

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """Resources whose Condition (if any) holds."""
        out = {}
        for logical_id, res in (self.raw.get("Resources", {}) or {}).items():
            cond = res.get("Condition")
            if cond is None or self.condition(cond):
                out[logical_id] = res
        return out

    def resources_of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r.get("Type") in types}

    def resource_type(self, logical_id: str) -> str:
        return self.resources[logical_id]["Type"]

    def properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self.resources[logical_id].get("Properties", {}) or {})

    # ------------------------------------------------------------------ dependencies

    def references(self, value: Any) -> set[Reference]:
        """Every Ref/GetAtt/Sub reference to a resource inside value (parameters and pseudos excluded)."""
        found: set[Reference] = set()
        resources = self.resources

        def walk(v: Any) -> None:
            if isinstance(v, dict):
                if len(v) == 1:
                    ((key, arg),) = v.items()
                    if key == "Ref" and isinstance(arg, str) and arg in resources:
                        found.add(Reference(arg))
                        return
                    if key == "Fn::GetAtt":
                        lid, att = _split_getatt(arg)
                        if lid in resources:
                            found.add(Reference(lid, att))
                        return
                    if key == "Fn::Sub":
                        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                        for name in _SUB_VAR.findall(text):
                            if name.startswith("!") or name in variables:
                                continue
                            lid, _, att = name.partition(".")
                            if lid in resources:
                                found.add(Reference(lid, att or None))
                        walk(variables)
                        return
                for item in v.values():
                    walk(item)
            elif isinstance(v, list):
                for item in v:
                    walk(item)

        walk(value)
        return found

    def dependencies(self, logical_id: str) -> set[str]:
        res = self.resources[logical_id]
        deps = {r.logical_id for r in self.references(res.get("Properties", {}))}
        depends_on = res.get("DependsOn") or []
        deps |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
        deps.discard(logical_id)
        return deps

    def topological_order(self, logical_ids: Iterable[str]) -> list[str]:
        """logical_ids sorted so that each comes after the (selected) resources it references."""
        selected = list(logical_ids)
        chosen = set(selected)
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(lid: str, stack: tuple[str, ...]) -> None:
            if state.get(lid) == 2:
                return
            if state.get(lid) == 1:
                raise TemplateError(f"circular dependency: {' -> '.join(stack + (lid,))}")
            state[lid] = 1
            for dep in sorted(self.dependencies(lid) & chosen):
                visit(dep, stack + (lid,))
            state[lid] = 2
            order.append(lid)

        for lid in selected:
            visit(lid, ())
        return order

    # ------------------------------------------------------------------ intrinsic resolution

    def pseudo(self, name: str) -> str:
        values = {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:stack/"
            f"{self.stack_name}/00000000-0000-0000-0000-000000000000",
        }
        if name not in values:
            raise TemplateError(f"unsupported pseudo parameter {name}")
        return values[name]

    def _ref_parameter_or_pseudo(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name == "AWS::NotificationARNs":
            return []
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        raise TemplateError(f"Ref {name}: not a parameter or pseudo parameter")

    def _find_in_map(self, arg: list[Any], resolve: Callable[[Any], Any]) -> Any:
        map_name, top, second = (resolve(a) for a in arg)
        try:
            return self.raw["Mappings"][map_name][top][second]
        except KeyError:
            raise TemplateError(f"FindInMap {map_name}/{top}/{second}: not found") from None

    def resolve(self, value: Any, lookup: PhysicalLookup | None = None) -> Any:
        """Resolve every intrinsic in value. Resource references go through lookup."""
        lookup = lookup or DictLookup()

        def res(v: Any) -> Any:
            if isinstance(v, dict):
                if len(v) == 1:
                    ((key, arg),) = v.items()
                    if key == "Ref":
                        if arg in self.resources:
                            return lookup.ref(arg)
                        if arg in (self.raw.get("Resources") or {}):
                            raise TemplateError(f"Ref {arg}: the resource's condition is false")
                        return self._ref_parameter_or_pseudo(arg)
                    if key == "Fn::GetAtt":
                        lid, att = _split_getatt(arg)
                        return lookup.get_att(lid, res(att))
                    if key == "Fn::Sub":
                        return self._sub(arg, res, lookup)
                    if key == "Fn::Join":
                        sep, items = arg
                        parts = res(items)
                        return res(sep).join(str(p) for p in parts if p is not NO_VALUE)
                    if key == "Fn::If":
                        cond, yes, no = arg
                        return res(yes if self.condition(cond) else no)
                    if key == "Fn::Select":
                        index, items = arg
                        return res(items)[int(res(index))]
                    if key == "Fn::Split":
                        sep, text = arg
                        return str(res(text)).split(res(sep))
                    if key == "Fn::FindInMap":
                        return self._find_in_map(arg, res)
                    if key == "Fn::Base64":
                        import base64

                        return base64.b64encode(str(res(arg)).encode()).decode()
                    if key == "Fn::GetAZs":
                        return [f"{self.region}{z}" for z in "abc"]
                    if key == "Condition":
                        return self.condition(arg)
                    if key.startswith("Fn::"):
                        raise TemplateError(f"unsupported intrinsic {key}")
                out = {}
                for k, item in v.items():
                    r = res(item)
                    if r is not NO_VALUE:
                        out[k] = r
                return out
            if isinstance(v, list):
                return [r for r in (res(i) for i in v) if r is not NO_VALUE]
            return v

        return res(value)

    def _sub(self, arg: Any, res: Callable[[Any], Any], lookup: PhysicalLookup) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        else:
            text, variables = arg[0], {k: res(v) for k, v in arg[1].items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                lid, att = name.split(".", 1)
                return str(lookup.get_att(lid, att))
            if name in self.resources:
                return str(lookup.ref(name))
            return str(self._ref_parameter_or_pseudo(name))

        return _SUB_VAR.sub(replace, text)

    def resolve_str(self, value: Any, lookup: PhysicalLookup | None = None) -> str:
        resolved = self.resolve(value, lookup)
        if isinstance(resolved, (dict, list)):
            return json.dumps(resolved)
        if isinstance(resolved, bool):
            return "true" if resolved else "false"
        return str(resolved)

    # ------------------------------------------------------------------ functions

    @property
    def globals_function(self) -> dict[str, Any]:
        return dict((self.raw.get("Globals") or {}).get("Function") or {})

    def functions(self) -> dict[str, FunctionSpec]:
        return {lid: self.function(lid) for lid in self.resources_of_type("AWS::Serverless::Function")}

    def function(self, logical_id: str) -> FunctionSpec:
        props = self.properties(logical_id)
        glob = self.globals_function
        code_uri = props.get("CodeUri", glob.get("CodeUri"))
        handler = props.get("Handler", glob.get("Handler"))
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            raise TemplateError(f"{logical_id}: CodeUri and Handler must be plain strings")
        env: dict[str, Any] = {}
        env.update(((glob.get("Environment") or {}).get("Variables")) or {})
        env.update(((props.get("Environment") or {}).get("Variables")) or {})
        module_part, _, function_name = handler.rpartition(".")
        if not module_part:
            raise TemplateError(f"{logical_id}: Handler {handler!r} is not module.function")
        code_parts = [p for p in PurePosixPath(code_uri).parts if p not in (".", "")]
        module = ".".join(code_parts + module_part.replace("/", ".").split("."))

        sqs, schedules, routes, others = [], [], [], []
        for name, event in (props.get("Events") or {}).items():
            etype = event.get("Type")
            ep = event.get("Properties") or {}
            if etype == "SQS":
                queue_ref = _referenced_logical_id(ep.get("Queue"))
                if queue_ref is None:
                    raise TemplateError(f"{logical_id}.{name}: Queue must be !GetAtt <Queue>.Arn")
                sqs.append(
                    SqsEventSource(
                        name=name,
                        queue_logical_id=queue_ref,
                        batch_size=int(self.resolve(ep.get("BatchSize", 10))),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (ep.get("FunctionResponseTypes") or []),
                        maximum_batching_window_seconds=int(ep.get("MaximumBatchingWindowInSeconds", 0)),
                        enabled=bool(self.resolve(ep.get("Enabled", True))),
                    )
                )
            elif etype == "Schedule":
                schedules.append(
                    ScheduleEventSource(
                        name=name,
                        expression=str(self.resolve(ep["Schedule"])),
                        enabled=bool(self.resolve(ep.get("Enabled", True))),
                    )
                )
            elif etype == "HttpApi":
                api = _referenced_logical_id(ep.get("ApiId")) or "ServerlessHttpApi"
                method = str(ep.get("Method", "ANY")).upper()
                method = "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method
                routes.append(
                    HttpRoute(
                        name=name, method=method, path=str(ep.get("Path", "$default")), api_logical_id=api
                    )
                )
            else:
                others.append((name, str(etype)))

        return FunctionSpec(
            logical_id=logical_id,
            code_uri=code_uri,
            handler=handler,
            module=module,
            function_name=function_name,
            timeout=int(self.resolve(props.get("Timeout", glob.get("Timeout", 3)))),
            memory_size=int(self.resolve(props.get("MemorySize", glob.get("MemorySize", 128)))),
            environment_raw=env,
            sqs_events=tuple(sqs),
            schedules=tuple(schedules),
            http_routes=tuple(routes),
            other_events=tuple(others),
        )

    def function_environment(self, logical_id: str, lookup: PhysicalLookup) -> dict[str, str]:
        spec = self.function(logical_id)
        return {k: self.resolve_str(v, lookup) for k, v in spec.environment_raw.items()}

    def outputs(self, lookup: PhysicalLookup) -> dict[str, str]:
        out = {}
        for name, spec in (self.raw.get("Outputs") or {}).items():
            cond = spec.get("Condition")
            if cond is not None and not self.condition(cond):
                continue
            out[name] = self.resolve_str(spec["Value"], lookup)
        return out

    # ------------------------------------------------------------------ rules

    def rule_targets(self, logical_id: str) -> list[tuple[str, str | None]]:
        """(target id, logical id of the target resource or None) for an AWS::Events::Rule."""
        props = self.properties(logical_id)
        return [(str(t.get("Id")), _referenced_logical_id(t.get("Arn"))) for t in props.get("Targets") or []]

    def rule_bus(self, logical_id: str) -> str | None:
        """Logical id of the rule's bus, None for the default bus (or a bus given by name)."""
        return _referenced_logical_id(self.properties(logical_id).get("EventBusName"))


def _split_getatt(arg: Any) -> tuple[str, Any]:
    if isinstance(arg, str):
        lid, _, att = arg.partition(".")
        return lid, att
    return arg[0], arg[1]


def _referenced_logical_id(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            return arg
        if key == "Fn::GetAtt":
            return _split_getatt(arg)[0]
    return None


def _param_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
