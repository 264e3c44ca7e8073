"""``localcloud_job``: a process run by the nomad block's scheduler (supervisord).

Every argument forces replacement: a job is immutable, like an instance. Create writes the
job's ``[program:NAME]`` file into ``jobs_dir`` and has supervisord load and start it; read asks
supervisord (``getProcessInfo``) and reports a job that is missing, or no longer running, as
gone, so ``terraform plan`` proposes to create it again (drift); delete stops and unloads it and
removes its file. The work is done by :mod:`infrablocks.cloud.local.jobs`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from tf.iface import CreateContext, DeleteContext, PlanContext, ReadContext, UpdateContext
from tf.schema import Attribute, Schema
from tf.types import List, Map, String, Unknown
from tf.utils import Diagnostics

from infrablocks.cloud.local.jobs import (
    FAILED_STATES,
    JobError,
    JobSpec,
    JobStatus,
    Scheduler,
    SchedulerUnreachable,
    job_spec,
)
from infrablocks.cloud.local.provider_base import CloudResource, Values, map_like, reporting
from infrablocks.errors import ConfigError

START_TIMEOUT_SECONDS = 30.0
_SPEC_FIELDS = ("name", "command", "environment", "directory")


class JobResource(CloudResource):
    """``localcloud_job``: see the module docstring."""

    @classmethod
    def get_name(cls) -> str:
        return "job"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(attributes=[
            Attribute("scheduler_url", String(), required=True, requires_replace=True,
                      description="the scheduler's API, e.g. http://127.42.7.31:9001 "
                                  "(the nomad block's api_url)"),
            Attribute("jobs_dir", String(), required=True, requires_replace=True,
                      description="the directory the scheduler includes job files from "
                                  "(the nomad block's jobs_dir)"),
            Attribute("name", String(), required=True, requires_replace=True,
                      description="job name: lower-case letters, digits, '_', '.', '-'"),
            Attribute("command", List(String()), required=True, requires_replace=True,
                      description="program and arguments"),
            Attribute("environment", Map(String()), optional=True, requires_replace=True),
            Attribute("directory", String(), optional=True, requires_replace=True,
                      description="working directory (absolute)"),
            Attribute("id", String(), computed=True),
            Attribute("state", String(), computed=True,
                      description="supervisord's state of the process, e.g. RUNNING"),
        ])

    def create(self, ctx: CreateContext, planned: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"creating job {planned.get('name')}"):
            try:
                spec = _spec(planned)
            except ConfigError as error:  # its message lists the problems: keep them
                raise JobError(str(error)) from error
            scheduler = Scheduler(planned["scheduler_url"])
            status = scheduler.submit(spec, planned["jobs_dir"], timeout=START_TIMEOUT_SECONDS)
            return _state(planned, status)
        return None

    def read(self, ctx: ReadContext, current: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"reading job {current.get('name')}"):
            try:
                status = Scheduler(current["scheduler_url"]).status(current["name"])
            except SchedulerUnreachable:
                return None  # its node is gone, and the job with it
            if status is None or status.state in FAILED_STATES:
                return None
            return _state(current, status)
        return current

    def update(self, ctx: UpdateContext, current: Values, planned: Values) -> Values | None:
        # Every argument forces replacement: Terraform never asks for an in-place update.
        return {**planned, "id": current["id"], "state": current["state"]}

    def delete(self, ctx: DeleteContext, current: Values) -> None:
        with reporting(ctx.diagnostics, f"deleting job {current.get('name')}"):
            Scheduler(current["scheduler_url"]).remove(current["name"], current["jobs_dir"])
        return None

    def validate(self, diags: Diagnostics, type_name: str, config: Values) -> None:
        # Terraform validates each resource's evaluated configuration before planning it: an
        # invalid job is refused at plan time (when its values are known), naming every problem.
        super().validate(diags, type_name, config)
        if diags.has_errors() or not _all_known(config, _SPEC_FIELDS):
            return
        try:
            _spec(config)
        except ConfigError as error:
            diags.add_error(f"localcloud_job {config.get('name')}: {error}")

    def plan(self, ctx: PlanContext, current: Values | None, planned: Values) -> Values:
        return planned


def _spec(values: Values) -> JobSpec:
    return job_spec(values["name"], values["command"], values.get("environment"),
                    values.get("directory"))


def _all_known(values: Values, keys: tuple[str, ...]) -> bool:
    def known(value: object) -> bool:
        if value is Unknown:
            return False
        if isinstance(value, dict):
            return all(known(v) for v in value.values())
        if isinstance(value, list | tuple):
            return all(known(v) for v in value)
        return True

    return all(known(values.get(key)) for key in keys)


def _state(prior: Values, status: JobStatus) -> Values:
    address = urlsplit(prior["scheduler_url"]).netloc
    return {
        "scheduler_url": prior["scheduler_url"],
        "jobs_dir": prior["jobs_dir"],
        "name": prior["name"],
        "command": list(prior["command"]),
        "environment": map_like(prior.get("environment"), dict(prior.get("environment") or {})),
        "directory": prior.get("directory"),
        "id": f"{prior['name']}@{address}",
        "state": status.state,
    }
