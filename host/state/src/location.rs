//! From a storage URL (`file:///dir`, `s3://bucket/prefix`) or a plain directory to an object
//! store and the path of the root inside it.

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

/// A storage location as written in a pipeline, checked but not opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// A local directory.
    Local(PathBuf),
    /// An `s3://bucket/prefix` URL.
    S3 {
        /// The URL as written.
        url: String,
        /// The bucket.
        bucket: String,
        /// The prefix inside it, without leading or trailing `/`.
        prefix: String,
    },
}

impl StorageUrl {
    /// Reads `text`: `s3://bucket/prefix`, `file:///absolute/dir`, or a directory (relative ones
    /// resolve against `base_dir`).
    ///
    /// # Errors
    /// An unknown scheme, an s3 URL without a bucket, a `file:` URL that is not an absolute path.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, LocationError> {
        let fail = |reason: String| LocationError { location: text.to_owned(), reason };
        match url::Url::parse(text) {
            Ok(url) if url.scheme() == "s3" => {
                let bucket =
                    url.host_str().ok_or_else(|| fail("an s3 URL needs a bucket: s3://bucket/prefix".into()))?;
                Ok(Self::S3 {
                    url: text.to_owned(),
                    bucket: bucket.to_owned(),
                    prefix: url.path().trim_matches('/').to_owned(),
                })
            }
            Ok(url) if url.scheme() == "file" => {
                Ok(Self::Local(url.to_file_path().map_err(|()| fail(format!("`{text}` is not a local path")))?))
            }
            // One letter is a Windows drive (`C:\data`), not a scheme.
            Ok(url) if url.scheme().len() > 1 => Err(fail(format!("unsupported scheme `{}` (s3, file)", url.scheme()))),
            _ => Ok(Self::Local(base_dir.join(text))),
        }
    }

    /// For messages: the URL or the directory (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Self::Local(path) => path.display().to_string(),
            Self::S3 { url, .. } => url.clone(),
        }
    }
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
    /// Opens a parsed location: S3 with credentials and endpoint from `options` or the `AWS_*`
    /// environment variables (`allow_http: "true"` for a plain-HTTP endpoint), or a local
    /// directory, created if missing.
    ///
    /// # Errors
    /// An unusable option, options on a local directory, a directory that cannot be created.
    pub fn open<'a>(
        url: &StorageUrl,
        options: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, LocationError> {
        let describe = url.describe();
        let fail = |reason: String| LocationError { location: describe.clone(), reason };
        let mut options = options.into_iter().peekable();
        match url {
            StorageUrl::S3 { url, bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env().with_url(url).with_bucket_name(bucket);
                for (key, value) in options {
                    if key == "allow_http" {
                        builder = builder.with_allow_http(value == "true");
                        continue;
                    }
                    let key = key.parse().map_err(|err| fail(format!("option `{key}`: {err}")))?;
                    builder = builder.with_config(key, value);
                }
                let store = builder.build().map_err(|err| fail(err.to_string()))?;
                let root = ObjectPath::parse(prefix).map_err(|err| fail(err.to_string()))?;
                Ok(Self { store: Arc::new(store), root, describe })
            }
            StorageUrl::Local(dir) => {
                if options.peek().is_some() {
                    return Err(fail("options apply to s3:// storage only".into()));
                }
                std::fs::create_dir_all(dir).map_err(|err| fail(format!("creating {}: {err}", dir.display())))?;
                let store = LocalFileSystem::new_with_prefix(dir).map_err(|err| fail(err.to_string()))?;
                Ok(Self { store: Arc::new(store), root: ObjectPath::default(), describe })
            }
        }
    }
}
