//! The image module's error type.

use super::digest::{Digest, InvalidDigest};
use super::process::ProcessError;
use super::unpack::UnpackError;
use std::path::PathBuf;

/// What can go wrong resolving, pulling, importing, unpacking or building an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse.
    #[error("`{reference}` is not a valid image reference")]
    InvalidReference {
        /// As given.
        reference: String,
        /// Why.
        #[source]
        source: oci_client::ParseError,
    },
    /// A digest in a manifest, index or reference is not sha256.
    #[error(transparent)]
    InvalidDigest(#[from] InvalidDigest),
    /// The registry has no such repository, tag or digest.
    #[error("image {reference} was not found in its registry")]
    NotFound {
        /// As given.
        reference: String,
    },
    /// The registry's TLS certificate cannot be verified (a private CA the
    /// host was not given, a self-signed certificate).
    #[error(
        "cannot verify the TLS certificate of the registry of {reference} [E_IMAGE_TLS]: {message}; \
         give the host the registry's CA (`vt host run --registry-ca FILE`)"
    )]
    Tls {
        /// As given.
        reference: String,
        /// What the TLS layer said.
        message: String,
    },
    /// The registry wants (other) credentials.
    #[error("the registry refused access to {reference}: check the credentials for it")]
    Unauthorized {
        /// As given.
        reference: String,
    },
    /// Any other registry failure (network, protocol, server error).
    #[error("cannot fetch {reference} from its registry")]
    Registry {
        /// As given.
        reference: String,
        /// Why.
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    /// A blob's content does not hash to its digest.
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        /// The digest it should have.
        digest: Digest,
        /// What it hashed to.
        actual: String,
    },
    /// A blob's length differs from its descriptor's size.
    #[error("blob {digest} has {actual} bytes where its descriptor says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// A multi-platform image without a linux/amd64 variant.
    #[error("image {reference} has no linux/amd64 manifest")]
    NoPlatform {
        /// As given.
        reference: String,
    },
    /// An index where an image manifest was needed, or the reverse.
    #[error("{what} {digest} is not an image manifest")]
    NotAManifest {
        /// Where it came from.
        what: &'static str,
        /// The document's digest.
        digest: Digest,
    },
    /// A layer vt cannot apply.
    #[error("layer {digest} has media type {media_type}, which vt cannot unpack")]
    UnsupportedLayer {
        /// The layer.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// A JSON document (manifest, index, config, docker config) has the wrong shape.
    #[error("{what} is not valid")]
    Json {
        /// Which document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// An OCI layout directory cannot be used.
    #[error("{dir} is not a usable OCI image layout: {reason}")]
    Layout {
        /// The layout directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The layout has no manifest with that tag.
    #[error("the OCI layout {dir} has no image tagged `{tag}`")]
    TagNotInLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag asked for.
        tag: String,
    },
    /// A blob the store should have is missing (pull the image first).
    #[error("blob {digest} is not in the image store")]
    MissingBlob {
        /// The blob.
        digest: Digest,
    },
    /// A layer cannot be applied.
    #[error("cannot unpack layer {layer}")]
    Unpack {
        /// The layer's digest.
        layer: Digest,
        /// Why.
        #[source]
        source: UnpackError,
    },
    /// The image's process cannot be resolved.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A required program is not installed.
    #[error("{program} is not installed (package {package}): run `just setup`")]
    ToolMissing {
        /// The program.
        program: &'static str,
        /// The Debian package providing it.
        package: &'static str,
    },
    /// A program failed.
    #[error("{program} failed ({status}): {stderr}")]
    Tool {
        /// The program.
        program: &'static str,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The credentials file cannot be used.
    #[error("cannot use the credentials in {path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("an image task stopped unexpectedly")]
    Task(#[source] tokio::task::JoinError),
}

/// Shorthand for `Result<T, ImageError>`.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// `map_err` helper for IO errors.
pub(crate) fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io { op, path, source }
}
