//! From a storage URL (`file:///dir`, `s3://bucket/prefix`) or a plain directory to an object
//! store and the path of the root inside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;

/// A storage location that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage `{location}`: {reason}")]
pub struct LocationError {
    /// What was given.
    pub location: String,
    /// Why it cannot be used.
    pub reason: String,
}

/// An opened storage location.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The root inside the store.
    pub root: ObjectPath,
    /// The location for messages (the URL or directory, no secrets).
    pub describe: String,
}

impl Location {
    /// Opens `location`: an `s3://bucket/prefix` URL (credentials and endpoint from `options`
    /// or the `AWS_*` environment variables; `allow_http: "true"` for a plain-HTTP endpoint), a
    /// `file:///absolute/dir` URL, or a directory (relative ones resolve against `base_dir`).
    /// A local directory is created if missing.
    ///
    /// # Errors
    /// An unknown scheme, an unusable option, a directory that cannot be created.
    pub fn open(location: &str, options: &BTreeMap<String, String>, base_dir: &Path) -> Result<Self, LocationError> {
        let fail = |reason: String| LocationError { location: location.to_owned(), reason };
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(fail("the URL names no bucket (s3://bucket/prefix)".into()));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (key, value) in options {
                if key == "allow_http" {
                    builder = builder.with_allow_http(value == "true");
                    continue;
                }
                let key = key.parse().map_err(|err| fail(format!("option `{key}`: {err}")))?;
                builder = builder.with_config(key, value);
            }
            let store = builder.build().map_err(|err| fail(err.to_string()))?;
            let root = ObjectPath::parse(prefix.trim_matches('/')).map_err(|err| fail(err.to_string()))?;
            return Ok(Self { store: Arc::new(store), root, describe: location.to_owned() });
        }
        let dir: PathBuf = if let Some(rest) = location.strip_prefix("file://") {
            let url = url::Url::parse(location).map_err(|err| fail(err.to_string()))?;
            url.to_file_path().map_err(|()| fail(format!("`{rest}` is not an absolute path")))?
        } else if location.contains("://") {
            return Err(fail("unknown scheme: use s3://bucket/prefix, file:///dir or a directory".into()));
        } else {
            base_dir.join(location)
        };
        if !options.is_empty() {
            return Err(fail("options apply to s3:// storage only".into()));
        }
        std::fs::create_dir_all(&dir).map_err(|err| fail(format!("creating {}: {err}", dir.display())))?;
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|err| fail(err.to_string()))?;
        Ok(Self { store: Arc::new(store), root: ObjectPath::default(), describe: dir.display().to_string() })
    }
}
