//! The demo's one error type.

use std::path::PathBuf;

use courier_toolkit::ToolkitError;
use courier_verify::VerifyError;

/// Everything that can stop `courier demo orders` (a broken guarantee is not an error: it is
/// in the report, and the command's exit status says so).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A flag's value makes no sense.
    #[error("{0}")]
    BadArgument(String),
    /// The broker could not be started, faulted or reached.
    #[error("broker: {0}")]
    Broker(#[from] VerifyError),
    /// A Kafka client call failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A toolkit call failed.
    #[error("{0}")]
    Toolkit(#[from] ToolkitError),
    /// A service's database could not be opened or read.
    #[error("database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A service process could not be started or stopped.
    #[error("service {service}: {reason}")]
    Service {
        /// Which service.
        service: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The run could not finish (the pipeline did not drain in time, the producer failed).
    #[error("{0}")]
    Run(String),
}

impl DemoError {
    /// A database error on `path`.
    pub(crate) fn db(path: &std::path::Path) -> impl FnOnce(rusqlite::Error) -> Self + '_ {
        move |source| DemoError::Database {
            path: path.to_path_buf(),
            source,
        }
    }

    /// An I/O error on `path`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| DemoError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
