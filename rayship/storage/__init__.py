"""Model storage: versioned model folders under `s3://bucket/prefix/` or `file:///path/`.

Each sub-folder of a model prefix is one immutable version. `latest` means the version named by
the pointer object `latest` at the prefix (its content, stripped), else the highest version in
natural order (`rayship.storage.versions`). S3 versions are downloaded with boto3 into a local
cache keyed by version and ETag (`rayship.storage.cache`), which also serves, with a warning,
while S3 cannot be reached. Modules, one job each:

- `store`: `ModelStore`, the API the operator and the predictors use.
- `uris`, `names`: parsing model URIs, and which names may become cache folders.
- `versions`: natural order and the digest of a version.
- `s3`, `local`: reading an S3 prefix (boto3 client settings, error mapping) or a local one.
- `cache`: the cache layout, its manifest and atomic replacement of a version.
- `errors`: the exceptions, each naming the URI at fault.
"""

from rayship.storage.errors import ModelNotFound, StorageError, StorageUnavailable
from rayship.storage.names import LATEST
from rayship.storage.s3 import Credentials
from rayship.storage.store import ModelStore, ResolvedVersion, default_cache_dir
from rayship.storage.versions import natural_key, version_digest

__all__ = [
    "LATEST",
    "Credentials",
    "ModelNotFound",
    "ModelStore",
    "ResolvedVersion",
    "StorageError",
    "StorageUnavailable",
    "default_cache_dir",
    "natural_key",
    "version_digest",
]
