"""Files of each item version: raw bytes, clean Markdown, metadata JSON.

Two backends behind one small interface: local disk (the embedded default) and any S3 API server
through the ``minio`` SDK. Keys are derived from the item and the content hash, so writing the
same version twice is harmless and a failed load leaves nothing the catalog points to.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Protocol

from librarian.errors import StorageError


def item_prefix(item_id: str) -> str:
    return f"items/{item_id}/"


def version_prefix(item_id: str, content_hash: str) -> str:
    return f"{item_prefix(item_id)}{content_hash[:16]}/"


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def presigned_url(self, key: str, seconds: int = 3600, *,
                      download: tuple[str, str] | None = None) -> str | None: ...
    def ping(self) -> None: ...


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"object key escapes the store: {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write-then-rename: readers never see half a file.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            # A full disk fails mid-write: the partial temporary file goes too.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StorageError(f"cannot write {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        import shutil

        folder = self._path(prefix.rstrip("/"))
        if not folder.exists():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder)
        return count

    def presigned_url(self, key: str, seconds: int = 3600, *,
                      download: tuple[str, str] | None = None) -> str | None:
        return None  # local files are served by the API itself

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


class MinioObjectStore:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool = False) -> None:
        from minio import Minio

        self.bucket = bucket
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                             secure=secure)
        self._bucket_ready = False

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        from minio.error import S3Error

        try:
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        self._bucket_ready = True

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._ensure_bucket()
            self._client.put_object(self.bucket, key, io.BytesIO(data), len(data),
                                    content_type=content_type)
        except Exception as exc:  # minio raises S3Error, urllib3 and socket errors
            raise StorageError(f"cannot write {key} to bucket {self.bucket}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()
        except Exception as exc:
            raise StorageError(f"cannot read {key} from bucket {self.bucket}: {exc}") from exc

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self._client.stat_object(self.bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return False
            raise StorageError(f"cannot stat {key}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        from minio.deleteobjects import DeleteObject

        try:
            names = [o.object_name for o in self._client.list_objects(
                self.bucket, prefix=prefix, recursive=True) if o.object_name]
            errors = list(self._client.remove_objects(
                self.bucket, (DeleteObject(n) for n in names)))
        except Exception as exc:
            raise StorageError(f"cannot delete {prefix}* from {self.bucket}: {exc}") from exc
        if errors:
            raise StorageError(f"cannot delete {len(errors)} objects under {prefix}")
        return len(names)

    def presigned_url(self, key: str, seconds: int = 3600, *,
                      download: tuple[str, str] | None = None) -> str | None:
        """A signed link to ``key``; with ``download`` (Content-Disposition, Content-Type) the
        server answers with those headers instead of the stored ones."""
        from datetime import timedelta

        overrides: dict[str, str | list[str] | tuple[str]] | None = None if download is None else {
            "response-content-disposition": download[0], "response-content-type": download[1]}
        try:
            return str(self._client.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=seconds),
                response_headers=overrides))
        except Exception as exc:
            raise StorageError(f"cannot sign a link to {key}: {exc}") from exc

    def ping(self) -> None:
        try:
            self._ensure_bucket()
        except Exception as exc:
            raise StorageError(f"object store unreachable: {exc}") from exc
