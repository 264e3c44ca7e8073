"""The Terraform provider ``infrablocks.local/infrablocks/localcloud`` (``tf`` framework).

Run two ways (docs/localcloud.md "The Terraform provider"): by infrablocks, once per run, for
every Terraform command it starts (``--serve``: :mod:`infrablocks.cloud.local.provider_serve`,
Terraform re-attaches to it); or by Terraform itself, through the mirror's launcher
(``python -m infrablocks.cloud.local.provider``), several times per command, when Terraform is
run by hand. Every operation goes through ``LocalCloud``, which holds the cloud's file lock, so
any number of provider processes and calls can share one cloud.

Schema (docs/ARCHITECTURE.md "Provider schema"):

- data ``localcloud_image``: ``name``, ``version``, ``tag`` → ``id``, ``digest``, ``path``
- ``localcloud_volume``: ``name``, ``size_gb``, ``tags`` → ``id``, ``state``
- ``localcloud_instance``: ``name``, ``image_id``/``private_ip``/``user_data`` (force
  replacement), ``tags`` → ``id``, ``state``, ``pid``. Reading an instance whose process died
  on its own removes it (and frees its IP and volumes): the plan then proposes to create it again.
- ``localcloud_volume_attachment``: ``volume_id``, ``instance_id``, ``device_name`` (force
  replacement), ``stop_instance_before_detaching`` → ``id``
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tf.iface import (
    CreateContext,
    DataSource,
    DeleteContext,
    ImportContext,
    PlanContext,
    Provider,
    ReadContext,
    ReadDataContext,
    UpdateContext,
)
from tf.schema import Attribute, Schema
from tf.types import Bool, Map, Number, String, Unknown
from tf.utils import Diagnostics

from infrablocks.cloud.local.control import ENV_ROOT, LocalCloud
from infrablocks.cloud.local.errors import NotFoundError
from infrablocks.cloud.local.mirror import PROVIDER_SOURCE
from infrablocks.cloud.local.provider_base import (
    CloudResource,
    ProviderNotConfigured,
    Values,
    map_like,
    reporting,
)
from infrablocks.cloud.local.provider_creates import CreateJournal
from infrablocks.cloud.local.provider_jobs import JobResource
from infrablocks.cloud.local.records import Instance

# How long a new instance must survive before create reports success: catches entrypoints that
# fail at once (bad script, missing binary) with their console output instead of a later drift.
STARTUP_CHECK_SECONDS = 0.2
TERMINATE_GRACE_SECONDS = 10.0


class ImageDataSource(DataSource):
    """``data "localcloud_image"``: a registered image by name and version or tag."""

    def __init__(self, provider: LocalCloudProvider) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "image"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(attributes=[
            Attribute("name", String(), required=True, description="image name, e.g. etcd"),
            Attribute("version", String(), optional=True, computed=True,
                      description="exact version; when omitted, the tagged or newest one"),
            Attribute("tag", String(), optional=True, description="an image tag, e.g. stable"),
            Attribute("id", String(), computed=True),
            Attribute("digest", String(), computed=True),
            Attribute("path", String(), computed=True),
        ])

    def read(self, ctx: ReadDataContext, config: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"localcloud_image {config.get('name')}"):
            cloud = self.provider.require_cloud()
            image = cloud.find_image(config["name"], version=config.get("version"),
                                     tag=config.get("tag"))
            return {"name": image.name, "version": image.version, "tag": config.get("tag"),
                    "id": image.id, "digest": image.digest, "path": image.path}
        return None


class VolumeResource(CloudResource):
    """``localcloud_volume``: a directory that outlives instances."""

    @classmethod
    def get_name(cls) -> str:
        return "volume"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(attributes=[
            Attribute("name", String(), required=True),
            Attribute("size_gb", Number(), required=True, description="recorded, not enforced"),
            Attribute("tags", Map(String()), optional=True),
            Attribute("id", String(), computed=True),
            Attribute("state", String(), computed=True, description="available | in-use"),
            Attribute("path", String(), computed=True, description="the data directory"),
        ])

    def create(self, ctx: CreateContext, planned: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"creating volume {planned.get('name')}"):
            cloud = self.cloud
            arguments = {"name": planned["name"], "size_gb": _whole(planned["size_gb"]),
                         "tags": planned.get("tags") or {}}
            creates = self.provider.creates
            with cloud.locked():
                claim = creates.begin("volume", arguments)
                try:
                    volume = cloud.create_volume(**arguments, client_token=claim.token)
                finally:
                    creates.done(claim.token)
            return self._state(volume, planned)
        return None

    def read(self, ctx: ReadContext, current: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"reading volume {current.get('id')}"):
            try:
                volume = self.cloud.get_volume(current["id"])
            except NotFoundError:
                return None
            self.provider.creates.confirm(volume.client_token)
            return self._state(volume, current)
        return current

    def update(self, ctx: UpdateContext, current: Values, planned: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"updating volume {current.get('id')}"):
            volume = self.cloud.modify_volume(current["id"], name=planned["name"],
                                              size_gb=_whole(planned["size_gb"]),
                                              tags=planned.get("tags") or {})
            self.provider.creates.confirm(volume.client_token)
            return self._state(volume, planned)
        return current

    def delete(self, ctx: DeleteContext, current: Values) -> None:
        with (reporting(ctx.diagnostics, f"deleting volume {current.get('id')}"),
              contextlib.suppress(NotFoundError)):
            cloud = self.cloud
            token = cloud.get_volume(current["id"]).client_token
            cloud.delete_volume(current["id"])
            self.provider.creates.confirm(token)
        return None

    def plan(self, ctx: PlanContext, current: Values | None, planned: Values) -> Values:
        if current is not None and ctx.changed_fields:
            # an attachment replaced in the same apply may change it meanwhile
            planned["state"] = Unknown
        return planned

    def import_(self, ctx: ImportContext, id: str) -> Values | None:
        with reporting(ctx.diagnostics, f"importing volume {id}"):
            volume = self.cloud.get_volume(id)
            self.provider.creates.confirm(volume.client_token)
            return self._state(volume, {"tags": {}})
        return None

    @staticmethod
    def _state(volume: Any, prior: Values) -> Values:
        size = prior.get("size_gb")
        return {"id": volume.id, "name": volume.name,
                # keep the configured number's form (1 vs 1.0) when it is the same value
                "size_gb": size if size == volume.size_gb else volume.size_gb,
                "tags": map_like(prior.get("tags"), volume.tags), "state": volume.state,
                "path": volume.path}


class InstanceResource(CloudResource):
    """``localcloud_instance``: the image's entrypoint running as a detached process."""

    @classmethod
    def get_name(cls) -> str:
        return "instance"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(attributes=[
            Attribute("name", String(), required=True),
            Attribute("image_id", String(), required=True, requires_replace=True),
            Attribute("private_ip", String(), required=True, requires_replace=True,
                      description="a loopback address, e.g. 127.42.7.11"),
            Attribute("user_data", Map(String()), optional=True, requires_replace=True,
                      description="what the entrypoint reads from LOCALCLOUD_USER_DATA"),
            Attribute("tags", Map(String()), optional=True),
            Attribute("id", String(), computed=True),
            Attribute("state", String(), computed=True),
            Attribute("pid", Number(), computed=True),
        ])

    def create(self, ctx: CreateContext, planned: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"creating instance {planned.get('name')}"):
            cloud, creates = self.cloud, self.provider.creates
            instance = self._launch(planned)
            try:
                time.sleep(STARTUP_CHECK_SECONDS)
                instance = cloud.get_instance(instance.id)
            finally:
                creates.done(instance.client_token)
            if instance.state not in ("pending", "running"):
                console = cloud.console_output(instance.id)
                cloud.terminate_instance(instance.id, grace=0)
                creates.confirm(instance.client_token)
                ctx.diagnostics.add_error(
                    f"creating instance {planned['name']}: its entrypoint exited right after "
                    "start", f"console output:\n{console}")
                return None
            return self._state(instance, planned)
        return None

    def _launch(self, planned: Values) -> Instance:
        """``run_instance`` through the create journal: a retry of a create whose result no
        state received returns that instance (launched again if its process has died)."""
        cloud, creates = self.cloud, self.provider.creates
        arguments = {"name": planned["name"], "image_id": planned["image_id"],
                     "private_ip": planned["private_ip"],
                     "user_data": planned.get("user_data") or {},
                     "tags": planned.get("tags") or {}}
        with cloud.locked():
            claim = creates.begin("instance", arguments)
            try:
                instance = cloud.run_instance(**arguments, client_token=claim.token)
                if claim.retry and instance.state not in ("pending", "running"):
                    cloud.terminate_instance(instance.id, grace=0)
                    creates.confirm(claim.token)
                    claim = creates.begin("instance", arguments)
                    instance = cloud.run_instance(**arguments, client_token=claim.token)
            except BaseException:
                creates.done(claim.token)
                raise
        return instance

    def read(self, ctx: ReadContext, current: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"reading instance {current.get('id')}"):
            cloud = self.cloud
            try:
                instance = cloud.get_instance(current["id"])
            except NotFoundError:
                return None
            self.provider.creates.confirm(instance.client_token)
            if instance.crashed:
                # Its process died without a stop: the instance is gone, as Terraform should
                # see it (drift). Remove the record so its IP and volumes are free again.
                cloud.terminate_instance(instance.id, grace=0)
                return None
            return self._state(instance, current)
        return current

    def update(self, ctx: UpdateContext, current: Values, planned: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"updating instance {current.get('id')}"):
            instance = self.cloud.modify_instance(current["id"], name=planned["name"],
                                                  tags=planned.get("tags") or {})
            self.provider.creates.confirm(instance.client_token)
            return self._state(instance, planned)
        return current

    def delete(self, ctx: DeleteContext, current: Values) -> None:
        with (reporting(ctx.diagnostics, f"terminating instance {current.get('id')}"),
              contextlib.suppress(NotFoundError)):
            cloud = self.cloud
            token = cloud.get_instance(current["id"]).client_token
            cloud.terminate_instance(current["id"], grace=TERMINATE_GRACE_SECONDS)
            self.provider.creates.confirm(token)
        return None

    def plan(self, ctx: PlanContext, current: Values | None, planned: Values) -> Values:
        if current is not None and ctx.changed_fields:
            # an in-place update re-reads these after it is applied
            planned["state"] = Unknown
            planned["pid"] = Unknown
        return planned

    def import_(self, ctx: ImportContext, id: str) -> Values | None:
        with reporting(ctx.diagnostics, f"importing instance {id}"):
            instance = self.cloud.get_instance(id)
            self.provider.creates.confirm(instance.client_token)
            return self._state(instance, {"tags": {}, "user_data": {}})
        return None

    @staticmethod
    def _state(instance: Any, prior: Values) -> Values:
        return {"id": instance.id, "name": instance.name, "image_id": instance.image_id,
                "private_ip": instance.private_ip,
                "user_data": map_like(prior.get("user_data"), instance.user_data),
                "tags": map_like(prior.get("tags"), instance.tags),
                "state": instance.state, "pid": instance.pid}


class VolumeAttachmentResource(CloudResource):
    """``localcloud_volume_attachment``: the volume at ``DEVICES_DIR/<device_name>``."""

    @classmethod
    def get_name(cls) -> str:
        return "volume_attachment"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(attributes=[
            Attribute("volume_id", String(), required=True, requires_replace=True),
            Attribute("instance_id", String(), required=True, requires_replace=True),
            Attribute("device_name", String(), required=True, requires_replace=True),
            Attribute("stop_instance_before_detaching", Bool(), optional=True,
                      description="stop the instance (SIGTERM, then SIGKILL) before detaching; "
                                  "default false: detaching from a running instance fails"),
            Attribute("id", String(), computed=True),
        ])

    def create(self, ctx: CreateContext, planned: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"attaching volume {planned.get('volume_id')}"):
            attachment = self.cloud.attach_volume(planned["volume_id"], planned["instance_id"],
                                                  planned["device_name"])
            return self._state(attachment, planned)
        return None

    def read(self, ctx: ReadContext, current: Values) -> Values | None:
        with reporting(ctx.diagnostics, f"reading attachment {current.get('id')}"):
            try:
                volume = self.cloud.get_volume(current["volume_id"])
            except NotFoundError:
                return None
            attachment = volume.attachment
            if (attachment is None or attachment.instance_id != current["instance_id"]
                    or attachment.device != current["device_name"]):
                return None
            return self._state(attachment, current)
        return current

    def update(self, ctx: UpdateContext, current: Values, planned: Values) -> Values | None:
        # only stop_instance_before_detaching can change in place: nothing to do in the cloud
        return {**current, "stop_instance_before_detaching":
                planned.get("stop_instance_before_detaching")}

    def delete(self, ctx: DeleteContext, current: Values) -> None:
        volume_id, instance_id = current["volume_id"], current["instance_id"]
        with reporting(ctx.diagnostics, f"detaching volume {volume_id} from {instance_id}"):
            cloud = self.cloud
            if current.get("stop_instance_before_detaching"):
                with contextlib.suppress(NotFoundError):
                    cloud.stop_instance(instance_id, grace=TERMINATE_GRACE_SECONDS)
            with contextlib.suppress(NotFoundError):  # the volume is gone: so is the attachment
                cloud.detach_volume(volume_id, instance_id)
        return None

    def plan(self, ctx: PlanContext, current: Values | None, planned: Values) -> Values:
        return planned

    @staticmethod
    def _state(attachment: Any, prior: Values) -> Values:
        return {"id": f"{attachment.device}:{attachment.volume_id}:{attachment.instance_id}",
                "volume_id": attachment.volume_id, "instance_id": attachment.instance_id,
                "device_name": attachment.device,
                "stop_instance_before_detaching": prior.get("stop_instance_before_detaching")}


DATA_SOURCES: list[type[DataSource]] = [ImageDataSource]
# The provider's resource types; another module may add its own (e.g. localcloud_job).
RESOURCES: list[type[CloudResource]] = [VolumeResource, InstanceResource,
                                        VolumeAttachmentResource, JobResource]


class LocalCloudProvider(Provider):
    """The provider: configured with the cloud's root directory.

    ``shared``: one process serves every Terraform command of a run
    (:mod:`infrablocks.cloud.local.provider_serve`). Its calls do not say which command's
    configuration they belong to, so it serves exactly one cloud, its own ``LOCALCLOUD_ROOT``,
    and refuses a configuration naming another ``root``.
    """

    def __init__(self, *, shared: bool = False) -> None:
        self.cloud: LocalCloud | None = None
        self.shared = shared
        self._creates: CreateJournal | None = None

    @property
    def creates(self) -> CreateJournal:
        """The journal of creates no state has confirmed yet (``provider_creates``)."""
        cloud = self.require_cloud()
        journal = self._creates
        if journal is None or journal.directory.parent.parent != cloud.root:
            journal = self._creates = CreateJournal(cloud)
        return journal

    def get_model_prefix(self) -> str:
        return "localcloud_"

    def full_name(self) -> str:
        return PROVIDER_SOURCE

    def get_provider_schema(self, diags: Diagnostics) -> Schema:
        return Schema(attributes=[
            Attribute("root", String(), optional=True,
                      description=f"the local cloud's directory (default: ${ENV_ROOT})"),
        ])

    def validate_config(self, diags: Diagnostics, config: Values) -> None:
        pass

    def configure_provider(self, diags: Diagnostics, config: Values) -> None:
        root = config.get("root")
        if root is Unknown:
            root = None
        default = os.environ.get(ENV_ROOT)
        root = root or default
        if not root:
            diags.add_error(
                "localcloud provider: the local cloud's directory is not set",
                f"set the environment variable {ENV_ROOT} (infrablocks does it for the "
                "Terraform runs it starts) or the provider attribute `root`")
            return
        if not self.shared:
            self.cloud = LocalCloud(root)
            return
        assert default, "a shared provider is started with LOCALCLOUD_ROOT set"
        if self.cloud is None:
            self.cloud = LocalCloud(default)
        if LocalCloud(root).root != self.cloud.root:
            diags.add_error(
                f"localcloud provider: root = {root!r} is not the local cloud this run uses",
                f"infrablocks serves the provider once per run for the cloud at "
                f"{self.cloud.root} ({ENV_ROOT}); remove the provider's `root` attribute, or "
                f"set {ENV_ROOT} to that directory")

    def require_cloud(self) -> LocalCloud:
        if self.cloud is None:
            raise ProviderNotConfigured("the localcloud provider is not configured")
        return self.cloud

    def get_data_sources(self) -> list[type[DataSource]]:
        return list(DATA_SOURCES)

    def get_resources(self) -> list[type[CloudResource]]:
        return list(RESOURCES)


def _whole(value: Any) -> Any:
    """A whole float (Terraform numbers arrive as floats) as an int; anything else as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _cert_cache_dir() -> Path:
    """Where the framework caches its TLS certificate: under the cloud's root when known (the
    tool owns it), else a per-user temporary directory — never the user's ~/.cache."""
    root = os.environ.get(ENV_ROOT)
    if root:
        return Path(root) / ".provider"
    return Path(tempfile.gettempdir()) / f"infrablocks-localcloud-provider-{os.getuid()}"


def _redirect_cert_cache() -> None:
    import tf.runner

    def cert_cache_path() -> Path:
        directory = _cert_cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        return directory / "ssl_cert.json"

    tf.runner._get_cert_cache_path = cert_cache_path


def _finish_operations_on_stop() -> None:
    """On Ctrl-C Terraform calls StopProvider and waits for the running operations; the tf
    framework answers it by stopping its gRPC server at once, which aborts them ("Plugin did
    not respond"): an instance already started then never reaches the state, and the next
    apply fails on its address. Let them finish; Terraform still ends the plugin afterwards
    through GRPCController/Shutdown, which the framework handles as before."""
    import tf.runner

    interceptor = tf.runner._ShutdownInterceptor
    original = interceptor.intercept_service

    def intercept_service(self: Any, continuation: Any, details: Any) -> Any:
        if details.method == "/tfplugin6.Provider/StopProvider":
            return continuation(details)
        return original(self, continuation, details)

    interceptor.intercept_service = intercept_service


def main(argv: list[str] | None = None) -> None:
    argv = argv if argv is not None else sys.argv
    if "--serve" in argv[1:]:
        from infrablocks.cloud.local.provider_serve import serve

        linger = argv[argv.index("--linger") + 1] if "--linger" in argv else None
        serve(LocalCloudProvider(shared=True),
              linger=float(linger) if linger is not None else None)
        return
    from tf.runner import run_provider

    _redirect_cert_cache()
    _finish_operations_on_stop()
    run_provider(LocalCloudProvider(), argv)


if __name__ == "__main__":
    main()
