"""Create, from template.yaml alone, every resource the local stack needs on the local AWS endpoint.

Idempotent: each resource is looked up first and created only when missing, so a second run is a
no-op (``ProvisionedStack.created`` is empty). Every resource type of the template must be known
here: provisioned, played by the runner, or not needed locally. Anything else raises, so a template
that gains something unwired fails loudly instead of silently doing nothing locally.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from smgt.local import endpoints
from smgt.local.template import TEMPLATE_PATH, PhysicalLookup, Template, TemplateError

log = logging.getLogger(__name__)

#: created on the endpoint by provision()
PROVISIONED_TYPES = frozenset(
    {
        "AWS::Events::EventBus",
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::Events::Rule",
        "AWS::SNS::Topic",
        "AWS::S3::Bucket",
    }
)
#: played in-process by smgt.local.runner / smgt.local.http_api
PLAYED_BY_RUNNER_TYPES = frozenset({"AWS::Serverless::Function", "AWS::Serverless::HttpApi"})
#: meaningful in the cloud only (permissions, monitoring, packaging): given placeholder names/ARNs
NOT_NEEDED_LOCALLY_TYPES = frozenset(
    {
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::CloudWatch::Alarm",
        "AWS::Serverless::LayerVersion",
        "AWS::ApiGatewayV2::Authorizer",
    }
)
KNOWN_TYPES = PROVISIONED_TYPES | PLAYED_BY_RUNNER_TYPES | NOT_NEEDED_LOCALLY_TYPES

#: function event types the runner plays (anything else on a function is unwired locally)
PLAYED_EVENT_TYPES = frozenset({"SQS", "Schedule", "HttpApi"})


class ProvisionError(RuntimeError):
    """The template uses something the local stack does not provide."""


@dataclass
class PhysicalResource:
    logical_id: str
    type: str
    ref: str  # what !Ref returns
    attributes: dict[str, str] = field(default_factory=dict)  # what !GetAtt returns
    created: bool = False  # created by this provision() call
    local: bool = True  # False for placeholders of types not needed locally


@dataclass
class ProvisionedStack:
    """What provision() made: physical names/ARNs/URLs by logical id, and each function's environment."""

    template: Template
    endpoint_url: str
    region: str
    account_id: str
    resources: dict[str, PhysicalResource]
    environments: dict[str, dict[str, str]]  # function logical id -> resolved environment
    outputs: dict[str, str]

    @property
    def created(self) -> list[str]:
        return [lid for lid, r in self.resources.items() if r.created]

    def ref(self, logical_id: str) -> str:
        return self.resources[logical_id].ref

    def attr(self, logical_id: str, attribute: str) -> str:
        return self.resources[logical_id].attributes[attribute]

    def of_type(self, resource_type: str) -> dict[str, PhysicalResource]:
        return {lid: r for lid, r in self.resources.items() if r.type == resource_type}

    def queue_url(self, logical_id: str) -> str:
        return self.attr(logical_id, "QueueUrl")

    def queue_arn(self, logical_id: str) -> str:
        return self.attr(logical_id, "Arn")

    @property
    def shared_environment(self) -> dict[str, str]:
        """Union of every function's environment (POWERTOOLS_SERVICE_NAME excluded: it differs)."""
        env: dict[str, str] = {}
        for fenv in self.environments.values():
            env.update({k: v for k, v in fenv.items() if k != "POWERTOOLS_SERVICE_NAME"})
        return env


class _Lookup(PhysicalLookup):
    def __init__(self, resources: Mapping[str, PhysicalResource]) -> None:
        self.resources = resources

    def ref(self, logical_id: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"Ref {logical_id}: not provisioned yet")
        return self.resources[logical_id].ref

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"GetAtt {logical_id}.{attribute}: not provisioned yet")
        try:
            return self.resources[logical_id].attributes[attribute]
        except KeyError:
            raise TemplateError(
                f"GetAtt {logical_id}.{attribute}: attribute not provided locally "
                f"(known: {sorted(self.resources[logical_id].attributes)})"
            ) from None


def check_wiring(template: Template) -> None:
    """Raise ProvisionError if the template uses a resource or event type nothing local plays."""
    problems = []
    for lid, res in template.resources.items():
        rtype = res.get("Type")
        if rtype not in KNOWN_TYPES:
            problems.append(f"{lid}: resource type {rtype} is not provisioned, played or declared unneeded")
    for lid, spec in template.functions().items():
        for name, etype in spec.other_events:
            problems.append(f"{lid}.{name}: function event type {etype} is not played by the local runner")
    for lid in template.resources_of_type("AWS::Events::Rule"):
        for target_id, target in template.rule_targets(lid):
            if target is None or template.resource_type(target) != "AWS::SQS::Queue":
                problems.append(f"{lid}: target {target_id} is not a queue of the template")
    if problems:
        raise ProvisionError("template has parts the local stack does not wire:\n  " + "\n  ".join(problems))


def client(service: str, endpoint_url: str, region: str = endpoints.REGION) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=endpoints.ACCESS_KEY_ID,
        aws_secret_access_key=endpoints.SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
    )


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class _Provisioner:
    def __init__(self, template: Template, endpoint_url: str) -> None:
        self.t = template
        self.url = endpoint_url
        self.region = template.region
        self.account = template.account_id
        self.resources: dict[str, PhysicalResource] = {}
        self.lookup = _Lookup(self.resources)
        self._clients: dict[str, Any] = {}
        self.name_prefix = template.parameters.get("Prefix", template.stack_name)

    def c(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(service, self.url, self.region)
        return self._clients[service]

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.t.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )

    def name(self, logical_id: str, props: Mapping[str, Any], key: str, max_len: int = 64) -> str:
        if key in props:
            return str(self.t.resolve(props[key], self.lookup))
        return f"{self.name_prefix}-{logical_id}"[:max_len]

    # ------------------------------------------------------------------ driver

    def run(self) -> None:
        check_wiring(self.t)
        resources = self.t.resources
        for lid in self.t.topological_order(resources):
            rtype = resources[lid]["Type"]
            props = self.t.properties(lid)
            handler = getattr(self, "_" + rtype.replace("::", "_"))
            self.resources[lid] = handler(lid, props)

    # ------------------------------------------------------------------ provisioned types

    def _AWS_Events_EventBus(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        name = self.name(lid, props, "Name")
        events = self.c("events")
        created = False
        try:
            arn = events.describe_event_bus(Name=name)["Arn"]
        except ClientError as err:
            if _code(err) != "ResourceNotFoundException":
                raise
            arn = events.create_event_bus(Name=name)["EventBusArn"]
            created = True
        return PhysicalResource(lid, "AWS::Events::EventBus", name, {"Arn": arn, "Name": name}, created)

    def _AWS_DynamoDB_Table(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        props = self.t.resolve(props, self.lookup)
        name = props.get("TableName") or self.name(lid, props, "TableName", 255)
        ddb = self.c("dynamodb")
        created = False
        try:
            desc = ddb.describe_table(TableName=name)["Table"]
        except ClientError as err:
            if _code(err) != "ResourceNotFoundException":
                raise
            kwargs: dict[str, Any] = {
                "TableName": name,
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": props.get("BillingMode", "PROVISIONED"),
            }
            if kwargs["BillingMode"] == "PROVISIONED":
                kwargs["ProvisionedThroughput"] = _throughput(props.get("ProvisionedThroughput"))
            gsis = []
            for gsi in props.get("GlobalSecondaryIndexes") or []:
                g = {k: gsi[k] for k in ("IndexName", "KeySchema", "Projection")}
                if kwargs["BillingMode"] == "PROVISIONED":
                    g["ProvisionedThroughput"] = _throughput(gsi.get("ProvisionedThroughput"))
                gsis.append(g)
            if gsis:
                kwargs["GlobalSecondaryIndexes"] = gsis
            if props.get("LocalSecondaryIndexes"):
                kwargs["LocalSecondaryIndexes"] = props["LocalSecondaryIndexes"]
            if props.get("StreamSpecification"):
                kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
            desc = ddb.create_table(**kwargs)["TableDescription"]
            ddb.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
            )
            ttl = props.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
                )
            created = True
        attrs = {"Arn": desc.get("TableArn") or self.arn("dynamodb", f"table/{name}")}
        if desc.get("LatestStreamArn"):
            attrs["StreamArn"] = desc["LatestStreamArn"]
        return PhysicalResource(lid, "AWS::DynamoDB::Table", name, attrs, created)

    _SQS_ATTRIBUTES = (
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "FifoQueue",
        "ContentBasedDeduplication",
        "SqsManagedSseEnabled",
    )

    def _AWS_SQS_Queue(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        props = self.t.resolve(props, self.lookup)
        name = props.get("QueueName") or self.name(lid, props, "QueueName", 80)
        if props.get("FifoQueue") and not name.endswith(".fifo"):
            name += ".fifo"
        sqs = self.c("sqs")
        created = False
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as err:
            if "NonExistentQueue" not in _code(err):
                raise
            attributes = {k: _attr_str(props[k]) for k in self._SQS_ATTRIBUTES if k in props}
            if props.get("RedrivePolicy"):
                attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            created = True
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return PhysicalResource(
            lid, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url}, created
        )

    def _AWS_Events_Rule(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        props = self.t.resolve(props, self.lookup)
        name = props.get("Name") or self.name(lid, props, "Name")
        bus = props.get("EventBusName") or "default"
        if bus.startswith("arn:"):
            bus = bus.rsplit("/", 1)[-1]
        events = self.c("events")
        created = False
        try:
            arn = events.describe_rule(Name=name, EventBusName=bus)["Arn"]
        except ClientError as err:
            if _code(err) != "ResourceNotFoundException":
                raise
            kwargs: dict[str, Any] = {
                "Name": name,
                "EventBusName": bus,
                "State": props.get("State", "ENABLED"),
            }
            if "EventPattern" in props:
                pattern = props["EventPattern"]
                kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
            if "ScheduleExpression" in props:
                kwargs["ScheduleExpression"] = props["ScheduleExpression"]
            if "Description" in props:
                kwargs["Description"] = props["Description"]
            arn = events.put_rule(**kwargs)["RuleArn"]
            created = True
        existing = {
            t["Id"]: t for t in events.list_targets_by_rule(Rule=name, EventBusName=bus).get("Targets", [])
        }
        wanted = []
        for target in props.get("Targets") or []:
            t = {
                k: target[k]
                for k in ("Id", "Arn", "Input", "InputPath", "InputTransformer", "SqsParameters")
                if k in target
            }
            if "InputTransformer" in t and not isinstance(
                t["InputTransformer"].get("InputPathsMap", {}), dict
            ):
                raise ProvisionError(f"{lid}: InputTransformer.InputPathsMap must be a map")
            if existing.get(t["Id"], {}).get("Arn") != t["Arn"]:
                wanted.append(t)
        if wanted:
            events.put_targets(Rule=name, EventBusName=bus, Targets=wanted)
            created = True
        ref = name if bus == "default" else f"{bus}|{name}"
        return PhysicalResource(lid, "AWS::Events::Rule", ref, {"Arn": arn}, created)

    def _AWS_SNS_Topic(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        props = self.t.resolve(props, self.lookup)
        name = props.get("TopicName") or self.name(lid, props, "TopicName", 256)
        if props.get("FifoTopic") and not name.endswith(".fifo"):
            name += ".fifo"
        sns = self.c("sns")
        arn = self.arn("sns", name)
        created = False
        try:
            sns.get_topic_attributes(TopicArn=arn)
        except ClientError as err:
            if _code(err) not in ("NotFound", "NotFoundException"):
                raise
            attributes = {"FifoTopic": "true"} if props.get("FifoTopic") else {}
            arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
            created = True
        return PhysicalResource(lid, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": name}, created)

    def _AWS_S3_Bucket(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        props = self.t.resolve(props, self.lookup)
        name = props.get("BucketName") or self.name(lid, props, "BucketName", 63).lower()
        s3 = self.c("s3")
        created = False
        try:
            s3.head_bucket(Bucket=name)
        except ClientError as err:
            if _code(err) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            if self.region == "us-east-1":
                s3.create_bucket(Bucket=name)
            else:
                s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region})
            cors = props.get("CorsConfiguration")
            if cors:
                s3.put_bucket_cors(
                    Bucket=name, CORSConfiguration={"CORSRules": [_cors_rule(r) for r in cors["CorsRules"]]}
                )
            created = True
        attrs = {
            "Arn": f"arn:{self.t.partition}:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{self.region}.amazonaws.com",
        }
        return PhysicalResource(lid, "AWS::S3::Bucket", name, attrs, created)

    # ------------------------------------------------------------------ placeholders

    def _placeholder(
        self, lid: str, rtype: str, ref: str, attrs: dict[str, str] | None = None
    ) -> PhysicalResource:
        return PhysicalResource(lid, rtype, ref, attrs or {}, created=False, local=False)

    def _AWS_IAM_Role(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        name = self.name(lid, props, "RoleName")
        path = props.get("Path", "/")
        return self._placeholder(
            lid,
            "AWS::IAM::Role",
            name,
            {"Arn": self.arn("iam", f"role{path}{name}", region=False), "RoleId": f"AROA{lid.upper()[:17]}"},
        )

    def _AWS_IAM_Policy(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        return self._placeholder(lid, "AWS::IAM::Policy", self.name(lid, props, "PolicyName"))

    def _AWS_IAM_ManagedPolicy(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        name = self.name(lid, props, "ManagedPolicyName")
        arn = self.arn("iam", f"policy/{name}", region=False)
        return self._placeholder(lid, "AWS::IAM::ManagedPolicy", arn, {"PolicyArn": arn})

    def _AWS_SQS_QueuePolicy(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        return self._placeholder(lid, "AWS::SQS::QueuePolicy", lid)

    def _AWS_SNS_TopicPolicy(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        return self._placeholder(lid, "AWS::SNS::TopicPolicy", lid)

    def _AWS_CloudWatch_Alarm(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        name = self.name(lid, props, "AlarmName")
        return self._placeholder(
            lid, "AWS::CloudWatch::Alarm", name, {"Arn": self.arn("cloudwatch", f"alarm:{name}")}
        )

    def _AWS_Serverless_LayerVersion(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        name = self.name(lid, props, "LayerName")
        return self._placeholder(lid, "AWS::Serverless::LayerVersion", self.arn("lambda", f"layer:{name}:1"))

    def _AWS_ApiGatewayV2_Authorizer(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        return self._placeholder(lid, "AWS::ApiGatewayV2::Authorizer", "local")

    def _AWS_Serverless_HttpApi(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        return self._placeholder(lid, "AWS::Serverless::HttpApi", "local", {"ApiEndpoint": endpoints.API_URL})

    def _AWS_Serverless_Function(self, lid: str, props: dict[str, Any]) -> PhysicalResource:
        name = self.name(lid, props, "FunctionName")
        return self._placeholder(
            lid, "AWS::Serverless::Function", name, {"Arn": self.arn("lambda", f"function:{name}")}
        )


def _throughput(value: Mapping[str, Any] | None) -> dict[str, int]:
    value = value or {}
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 5)),
    }


_CORS_KEYS = {"Id": "ID", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}


def _cors_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's CorsRule -> the S3 API's CORSRule."""
    return {_CORS_KEYS.get(k, k): v for k, v in rule.items()}


def _attr_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def account_id_of(endpoint_url: str, region: str = endpoints.REGION) -> str:
    """The account the endpoint answers for (moto: 123456789012, LocalStack: 000000000000)."""
    try:
        return str(client("sts", endpoint_url, region).get_caller_identity()["Account"])
    except Exception:  # noqa: BLE001 - an endpoint without STS: fall back to moto's default
        return endpoints.ACCOUNT_ID


def provision(
    endpoint_url: str,
    *,
    template: Template | None = None,
    template_path: str | Path = TEMPLATE_PATH,
    parameters: Mapping[str, Any] | None = None,
    region: str = endpoints.REGION,
) -> ProvisionedStack:
    """Create every local resource of the template on endpoint_url (idempotent) and describe them."""
    if template is not None:
        check_wiring(template)  # fail before touching the endpoint
    account = account_id_of(endpoint_url, region)
    if template is None:
        template = Template.load(template_path, parameters=parameters, region=region, account_id=account)
    else:
        template = template.with_account(account, region)
    prov = _Provisioner(template, endpoint_url)
    prov.run()
    environments = {lid: template.function_environment(lid, prov.lookup) for lid in template.functions()}
    stack = ProvisionedStack(
        template=template,
        endpoint_url=endpoint_url,
        region=region,
        account_id=account,
        resources=prov.resources,
        environments=environments,
        outputs=template.outputs(prov.lookup),
    )
    log.info(
        "provisioned %d resources (%d created) on %s", len(stack.resources), len(stack.created), endpoint_url
    )
    return stack
