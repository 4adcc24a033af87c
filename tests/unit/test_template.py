"""template.yaml: it validates, it follows docs/ARCHITECTURE.md, and the local stack wires all of it."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smgt.local.provision import (
    KNOWN_TYPES,
    PLAYED_EVENT_TYPES,
    PROVISIONED_TYPES,
    ProvisionError,
    check_wiring,
    provision,
)
from smgt.local.template import REPO_ROOT, TEMPLATE_PATH, Template

SAM = Path(sys.executable).parent / "sam"

QUEUES = ["IntakeQueue", "CoordinatorQueue", "LauncherQueue", "ListenerQueue", "NotifierQueue"]
ENV_VARS = {
    "TABLE_NAME",
    "EVENT_BUS_NAME",
    "INPUT_BUCKET",
    "PROCESSING_BUCKET",
    "STATUS_TOPIC_ARN",
    "LABELING_JOB_ROLE_ARN",
    "JOB_COMPLETION_TIMEOUT",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_LOG_LEVEL",
}
FUNCTIONS = {
    "BatchApiFunction": ("services/batch_api/", "api.lambda_handler"),
    "BatchIntakeFunction": ("services/batch_api/", "intake.lambda_handler"),
    "LevelCoordinatorFunction": ("services/level_coordinator/", "handler.lambda_handler"),
    "JobLauncherFunction": ("services/job_launcher/", "handler.lambda_handler"),
    "JobListenerFunction": ("services/job_listener/", "handler.lambda_handler"),
    "JobSweepFunction": ("services/job_listener/", "sweep.lambda_handler"),
    "NotifierFunction": ("services/notifier/", "handler.lambda_handler"),
}
RULES = {
    "BatchRequestedRule": ("EventBus", ["Batch Requested"], "IntakeQueue"),
    "CoordinatorRule": ("EventBus", ["Batch Created", "Labeling Job Finished"], "CoordinatorQueue"),
    "LevelStartedRule": ("EventBus", ["Level Started"], "LauncherQueue"),
    "SageMakerJobStateRule": (None, ["SageMaker Ground Truth Labeling Job State Change"], "ListenerQueue"),
    "BatchEndedRule": ("EventBus", ["Batch Completed", "Batch Failed"], "NotifierQueue"),
}


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(TEMPLATE_PATH)


def _getatt(value: object) -> list[str]:
    assert isinstance(value, dict) and "Fn::GetAtt" in value, value
    att = value["Fn::GetAtt"]
    return att.split(".", 1) if isinstance(att, str) else list(att)


def test_sam_validate_lint_passes() -> None:
    sam = str(SAM) if SAM.exists() else shutil.which("sam")
    if not sam:
        pytest.skip("the sam binary is not installed (pip install aws-sam-cli)")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        [sam, "validate", "--lint", "--region", "us-east-1", "--template-file", str(TEMPLATE_PATH)],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_functions_follow_architecture(template: Template) -> None:
    functions = template.functions()
    assert set(functions) == set(FUNCTIONS)
    for lid, (code_uri, handler) in FUNCTIONS.items():
        spec = functions[lid]
        assert (spec.code_uri, spec.handler) == (code_uri, handler)
        assert spec.module.startswith("services.") and spec.function_name == "lambda_handler"
        assert ENV_VARS <= set(spec.environment_raw), f"{lid} misses {ENV_VARS - set(spec.environment_raw)}"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_handler_exists(template: Template, logical_id: str) -> None:
    spec = template.function(logical_id)
    assert spec.handler_path.is_file(), f"{logical_id}: {spec.handler_path} is missing"


def test_every_consumed_queue_has_a_dlq_and_an_alarm(template: Template) -> None:
    resources = template.resources
    alarmed = {
        _getatt(d["Value"])[0]
        for r in template.resources_of_type("AWS::CloudWatch::Alarm").values()
        for d in r["Properties"]["Dimensions"]
    }
    consumed = {s.queue_logical_id: spec for spec in template.functions().values() for s in spec.sqs_events}
    assert set(consumed) == set(QUEUES)
    for queue, spec in consumed.items():
        props = resources[queue]["Properties"]
        redrive = props["RedrivePolicy"]
        dlq, att = _getatt(redrive["deadLetterTargetArn"])
        assert att == "Arn" and resources[dlq]["Type"] == "AWS::SQS::Queue"
        # a few retries before the DLQ; the launcher's queue also holds launches waiting for the job cap
        assert redrive["maxReceiveCount"] == (100 if queue == "LauncherQueue" else 5)
        assert resources[dlq]["Properties"]["MessageRetentionPeriod"] == 1209600
        assert props["VisibilityTimeout"] >= 6 * spec.timeout
        assert dlq in alarmed, f"no alarm on {dlq}"


def test_sqs_event_sources_report_batch_item_failures(template: Template) -> None:
    sources = [s for spec in template.functions().values() for s in spec.sqs_events]
    assert sources
    assert all(s.report_batch_item_failures and s.batch_size == 10 for s in sources)


def test_every_rule_targets_a_queue_with_a_policy(template: Template) -> None:
    rules = template.resources_of_type("AWS::Events::Rule")
    assert set(rules) == set(RULES)
    policies = template.resources_of_type("AWS::SQS::QueuePolicy").values()
    allowed = {}
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            queue = _getatt(statement["Resource"])[0]
            allowed[queue] = _getatt(statement["Condition"]["ArnEquals"]["aws:SourceArn"])[0]
    for lid, (bus, detail_types, queue) in RULES.items():
        props = rules[lid]["Properties"]
        assert template.rule_bus(lid) == bus
        pattern = props["EventPattern"]
        assert pattern["detail-type"] == detail_types
        assert pattern["source"] == (["aws.sagemaker"] if bus is None else ["smgt.workflow"])
        targets = template.rule_targets(lid)
        assert [t for _, t in targets] == [queue]
        assert allowed.get(queue) == lid


def test_table_indexes(template: Template) -> None:
    props = template.properties("BatchTable")
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    gsis = {
        g["IndexName"]: [(k["AttributeName"], k["KeyType"]) for k in g["KeySchema"]]
        for g in props["GlobalSecondaryIndexes"]
    }
    assert gsis == {
        "JobNameIndex": [("job_name_key", "HASH")],
        "StatusIndex": [("batch_status", "HASH"), ("created_at", "RANGE")],
        "InFlightIndex": [("inflight", "HASH"), ("deadline", "RANGE")],
    }
    assert types == {
        "pk": "S",
        "sk": "S",
        "job_name_key": "S",
        "batch_status": "S",
        "created_at": "S",
        "inflight": "S",
        "deadline": "N",
    }


def test_http_api_routes(template: Template) -> None:
    routes = [r.route_key for r in template.function("BatchApiFunction").http_routes]
    assert routes == ["POST /batch/create", "GET /batch/show", "POST /batch/cancel"]
    api = template.resources["BatchHttpApi"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "AWS_IAM"


def test_optional_cognito_authorizer_follows_its_condition() -> None:
    without = Template.load(TEMPLATE_PATH)
    assert "CognitoJwtAuthorizer" not in without.resources
    with_pool = Template.load(
        TEMPLATE_PATH, parameters={"CognitoUserPoolId": "us-east-1_abc", "CognitoUserPoolClientId": "client"}
    )
    assert "CognitoJwtAuthorizer" in with_pool.resources


def test_local_wiring_covers_the_whole_template(template: Template) -> None:
    check_wiring(template)  # raises on anything unwired
    resources = template.resources
    assert {r["Type"] for r in resources.values()} <= KNOWN_TYPES
    consumed = {s.queue_logical_id for spec in template.functions().values() for s in spec.sqs_events}
    for lid in template.resources_of_type("AWS::SQS::Queue"):
        assert resources[lid]["Type"] in PROVISIONED_TYPES
        # every queue is consumed by a function, or is the DLQ of a consumed queue
        dlqs = {
            _getatt(resources[q]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])[0] for q in consumed
        }
        assert lid in consumed | dlqs, f"{lid} is neither consumed nor a DLQ"
    for lid in template.resources_of_type("AWS::Events::Rule"):
        assert all(target in consumed for _, target in template.rule_targets(lid))
    for lid, spec in template.functions().items():
        assert spec.sqs_events or spec.schedules or spec.http_routes, f"{lid} is never invoked locally"
        assert not spec.other_events
    assert template.function("JobSweepFunction").schedules[0].expression == "rate(5 minutes)"


def _with(template: Template, mutate) -> Template:
    raw = copy.deepcopy(template.raw)
    mutate(raw)
    return Template(raw)


def test_provision_raises_on_unknown_resource_type(template: Template) -> None:
    bad = _with(
        template,
        lambda raw: raw["Resources"].update(
            {"Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}}}
        ),
    )
    with pytest.raises(ProvisionError, match="AWS::Kinesis::Stream"):
        check_wiring(bad)
    with pytest.raises(ProvisionError, match="Stream"):
        provision("http://127.0.0.1:9", template=bad)  # fails before touching the endpoint


def test_provision_raises_on_unplayed_event_type(template: Template) -> None:
    def add_event(raw: dict) -> None:
        raw["Resources"]["NotifierFunction"]["Properties"]["Events"]["Stream"] = {
            "Type": "Kinesis",
            "Properties": {"Stream": "arn:aws:kinesis:us-east-1:1:stream/s", "StartingPosition": "LATEST"},
        }

    with pytest.raises(ProvisionError, match="Kinesis"):
        check_wiring(_with(template, add_event))
    assert "SQS" in PLAYED_EVENT_TYPES


def test_provision_raises_on_rule_without_queue_target(template: Template) -> None:
    def retarget(raw: dict) -> None:
        raw["Resources"]["BatchEndedRule"]["Properties"]["Targets"][0]["Arn"] = {"Ref": "StatusTopic"}

    with pytest.raises(ProvisionError, match="BatchEndedRule"):
        check_wiring(_with(template, retarget))


def test_intrinsics_resolve_with_parameters_and_pseudos() -> None:
    t = Template.load(
        TEMPLATE_PATH, parameters={"Prefix": "demo"}, account_id="000000000000", region="eu-west-1"
    )
    assert t.resolve(t.properties("InputBucket")["BucketName"]) == "demo-000000000000-eu-west-1-input"
    assert t.resolve({"Fn::Join": ["-", [{"Ref": "Prefix"}, "x"]]}) == "demo-x"
    assert t.resolve({"Fn::If": ["HasCognito", "yes", {"Ref": "AWS::NoValue"}]}) is not None
    assert t.resolve({"a": {"Fn::If": ["HasCognito", "yes", {"Ref": "AWS::NoValue"}]}}) == {}
    assert t.resolve({"Fn::Sub": ["${X}-${!Literal}", {"X": "y"}]}) == "y-${Literal}"
