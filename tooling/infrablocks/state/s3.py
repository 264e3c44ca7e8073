"""The S3 state backend: Terraform's built-in ``s3`` backend with its native lock file.

Keys: ``PREFIX/ENV/BLOCK/terraform.tfstate`` (Terraform's state; Terraform's own lock is
``…/terraform.tfstate.tflock``), ``PREFIX/ENV/BLOCK/deployment.json``,
``PREFIX/ENV/BLOCK/documents/NAME.json`` and the infrablocks lock
``PREFIX/ENV/BLOCK/infrablocks.lock``.

The infrablocks lock is a conditional PUT (``If-None-Match: *``): S3 (and moto ≥ 5.0.x, checked
with 5.2.5) answers ``412 PreconditionFailed`` when the object exists, which is the same
primitive Terraform's ``use_lockfile`` relies on. Release is a conditional DELETE
(``If-Match: <our ETag>``) so a lock that was broken and re-taken by someone else is never
removed by its former owner.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from infrablocks.errors import ConfigError, InfrablocksError
from infrablocks.state.backends import LOCK_NAME, STATE_FILE, BlobStateBackend, check_name
from infrablocks.state.locks import LOCK_POLL_SECONDS, Lock, LockHeldError, LockInfo
from infrablocks.state.spec import BackendSpec
from infrablocks.waiting import poll


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str = "infrablocks"
    region: str = "us-east-1"
    endpoint: str | None = None
    use_path_style: bool = False
    skip_checks: bool = False
    access_key: str | None = None
    secret_key: str | None = None

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> S3Settings:
        """From blocks.toml ``[state]`` (see ``backend_from_settings`` for the keys)."""
        def text(key: str, default: str | None = None) -> str | None:
            value = table.get(key, default)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"blocks.toml [state] {key} must be a non-empty string",
                                  hint=f"got {value!r}")
            return value

        def boolean(key: str, default: bool) -> bool:
            value = table.get(key, default)
            if not isinstance(value, bool):
                raise ConfigError(f"blocks.toml [state] {key} must be true or false",
                                  hint=f"got {value!r}")
            return value

        bucket = text("bucket")
        if not bucket:
            raise ConfigError("blocks.toml [state] backend = \"s3\" needs a bucket",
                              hint='add bucket = "my-terraform-state"')
        endpoint = text("endpoint")
        access_key, secret_key = text("access_key"), text("secret_key")
        if (access_key is None) != (secret_key is None):
            raise ConfigError("blocks.toml [state]: set both access_key and secret_key, or "
                              "neither (then the AWS_* environment / profile is used)")
        prefix = (text("prefix", "infrablocks") or "").strip("/")
        if not prefix:
            raise ConfigError("blocks.toml [state] prefix must not be empty or only '/'")
        return cls(bucket=bucket, prefix=prefix, region=text("region", "us-east-1") or "",
                   endpoint=endpoint,
                   use_path_style=boolean("use_path_style", endpoint is not None),
                   skip_checks=boolean("skip_checks", endpoint is not None),
                   access_key=access_key, secret_key=secret_key)


class S3Backend(BlobStateBackend):
    """State, records, documents and locks as objects in one bucket."""

    kind = "s3"

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Backend(s3://{self.settings.bucket}/{self.settings.prefix})"

    # -- Terraform ------------------------------------------------------------------------------

    def key(self, environment: str, block: str, name: str = STATE_FILE) -> str:
        return (f"{self.settings.prefix}/{check_name('environment', environment)}/"
                f"{check_name('block', block)}/{name}")

    def terraform_backend(self, environment: str, block: str, *,
                          create: bool = True) -> BackendSpec:
        # Nothing to create beforehand: the bucket exists, Terraform writes the object.
        s = self.settings
        config: dict[str, object] = {
            "bucket": s.bucket,
            "key": self.key(environment, block),
            "region": s.region,
            "use_lockfile": True,
        }
        if s.endpoint:
            config["endpoints"] = {"s3": s.endpoint}
        if s.use_path_style:
            config["use_path_style"] = True
        if s.skip_checks:
            config.update(skip_credentials_validation=True, skip_requesting_account_id=True,
                          skip_metadata_api_check=True, skip_region_validation=True)
        if s.access_key and s.secret_key:
            config.update(access_key=s.access_key, secret_key=s.secret_key)
        return BackendSpec("s3", config)

    # -- listing and purging --------------------------------------------------------------------

    def list_environments(self) -> list[str]:
        return sorted(p for p in self._common_prefixes(f"{self.settings.prefix}/")
                      if self.list_blocks(p))

    def list_blocks(self, environment: str) -> list[str]:
        env_prefix = f"{self.settings.prefix}/{check_name('environment', environment)}/"
        blocks = []
        for block in self._common_prefixes(env_prefix):
            names = self._keys(f"{env_prefix}{block}/")
            annotated = any(n == "deployment.json" or n.startswith("documents/") for n in names)
            if annotated or (STATE_FILE in names and self._get(environment, block, STATE_FILE)):
                blocks.append(block)
        return sorted(blocks)

    def purge(self, environment: str, block: str) -> None:
        base = self.key(environment, block, "")
        for name in self._keys(base):
            if name != LOCK_NAME:
                self.client().delete_object(Bucket=self.settings.bucket, Key=base + name)

    # -- locks ------------------------------------------------------------------------------

    def acquire_lock(self, environment: str, block: str, operation: str, *,
                     wait: float = 0.0) -> Lock:
        from botocore.exceptions import ClientError

        key = self.key(environment, block, LOCK_NAME)
        info = LockInfo.for_this_process(environment, block, operation)
        where = f"s3://{self.settings.bucket}/{key}"
        note = None
        holder: LockInfo | None = None
        previous: LockInfo | None = None

        def attempt() -> dict[str, Any] | None:
            """The put's response, or None while another live process holds the lock (a dead
            holder's lock is taken over at once)."""
            nonlocal note, holder, previous
            while True:
                try:
                    response: dict[str, Any] = self._call("lock", key, self.client().put_object,
                                      Bucket=self.settings.bucket, Key=key, Body=info.dumps(),
                                      IfNoneMatch="*", ContentType="application/json")
                    return response
                except ClientError as exc:
                    if _error_code(exc) not in ("PreconditionFailed",
                                                "ConditionalRequestConflict"):
                        raise self._error("lock", key, exc) from exc
                holder, etag = self._read_lock(key)
                if holder is None or etag is None or not holder.holder_is_gone():
                    return None
                if self._delete_if_match(key, etag):
                    previous = holder
                    note = (f"took over the lock of {environment}/{block} left by "
                            f"{holder.describe()}, which ended without releasing it")

        response = poll(attempt, lambda put: put is not None, timeout=wait,
                        interval=LOCK_POLL_SECONDS).value
        if response is None:
            raise LockHeldError(environment, block, holder, where=where)
        etag = response.get("ETag")

        def release() -> None:
            if etag is not None:
                self._delete_if_match(key, etag)

        def hand_back(holder: LockInfo) -> None:
            from botocore.exceptions import BotoCoreError, ClientError

            if etag is None:
                return
            try:  # the dead holder again, so that the next acquirer waits for its workers too
                self.client().put_object(Bucket=self.settings.bucket, Key=key,
                                         Body=holder.dumps(), IfMatch=etag,
                                         ContentType="application/json")
            except (ClientError, BotoCoreError):
                release()

        return Lock(info, release, note=note, previous=previous, hand_back=hand_back)

    def lock_holder(self, environment: str, block: str) -> LockInfo | None:
        holder, _ = self._read_lock(self.key(environment, block, LOCK_NAME))
        return holder

    def _read_lock(self, key: str) -> tuple[LockInfo | None, str | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client().get_object(Bucket=self.settings.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                return None, None
            raise self._error("read lock", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("read lock", key, exc) from exc
        return LockInfo.loads(response["Body"].read()), response.get("ETag")

    def _delete_if_match(self, key: str, etag: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().delete_object(Bucket=self.settings.bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            if _error_code(exc) in ("PreconditionFailed", "NoSuchKey", "404"):
                return False
            raise self._error("unlock", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("unlock", key, exc) from exc
        return True

    # -- blobs ------------------------------------------------------------------------------

    def client(self) -> Any:
        """The boto3 S3 client (created once; boto3 clients are thread-safe)."""
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                s = self.settings
                kwargs: dict[str, Any] = {"region_name": s.region}
                if s.endpoint:
                    kwargs["endpoint_url"] = s.endpoint
                if s.access_key and s.secret_key:
                    kwargs.update(aws_access_key_id=s.access_key,
                                  aws_secret_access_key=s.secret_key)
                config = Config(s3={"addressing_style": "path" if s.use_path_style else "auto"},
                                retries={"max_attempts": 3, "mode": "standard"})
                self._client = boto3.session.Session().client("s3", config=config, **kwargs)
            return self._client

    def _get(self, environment: str, block: str, name: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(environment, block, name)
        try:
            response = self.client().get_object(Bucket=self.settings.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error("read", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("read", key, exc) from exc
        data: bytes = response["Body"].read()
        return data

    def _put(self, environment: str, block: str, name: str, data: bytes) -> None:
        key = self.key(environment, block, name)
        self._call("write", key, self.client().put_object, Bucket=self.settings.bucket,
                   Key=key, Body=data, ContentType="application/json")

    def _delete(self, environment: str, block: str, name: str) -> bool:
        key = self.key(environment, block, name)
        if self._get(environment, block, name) is None:
            return False
        self._call("delete", key, self.client().delete_object, Bucket=self.settings.bucket,
                   Key=key)
        return True

    def _where(self, environment: str, block: str, name: str) -> str:
        return f"s3://{self.settings.bucket}/{self.key(environment, block, name)}"

    def _keys(self, prefix: str) -> list[str]:
        """Names (relative to ``prefix``) of every object under it."""
        names: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=prefix):
                names.extend(item["Key"][len(prefix):] for item in page.get("Contents", ()))
        except Exception as exc:  # noqa: BLE001 - botocore raises several families here
            raise self._error("list", prefix, exc) from exc
        return names

    def _common_prefixes(self, prefix: str) -> list[str]:
        found: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=prefix,
                                           Delimiter="/"):
                found.extend(p["Prefix"][len(prefix):].rstrip("/")
                             for p in page.get("CommonPrefixes", ()))
        except Exception as exc:  # noqa: BLE001
            raise self._error("list", prefix, exc) from exc
        return found

    def _call(self, what: str, key: str, operation: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return operation(**kwargs)
        except ClientError as exc:
            if what == "lock":
                raise
            raise self._error(what, key, exc) from exc
        except BotoCoreError as exc:  # no connection, bad endpoint, no credentials …
            raise self._error(what, key, exc) from exc

    def _error(self, what: str, key: str, exc: Exception) -> InfrablocksError:
        return InfrablocksError(
            f"S3 state backend: cannot {what} s3://{self.settings.bucket}/{key}: {exc}",
            hint=f"check blocks.toml [state] (bucket, region, endpoint "
                 f"{self.settings.endpoint or 'AWS'}) and the AWS credentials")


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
