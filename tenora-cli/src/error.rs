//! CLI errors and exit codes.

use std::fmt;
use std::process::ExitCode;

/// A failure of the CLI, with its exit code: 2 for usage and configuration errors, 1 for work
/// that failed.
#[derive(Debug)]
pub struct CliError {
    /// What went wrong, for the user (never containing a password).
    pub message: String,
    /// The exit code class.
    pub kind: ErrorKind,
}

/// The two exit code classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad usage or configuration: exit code 2.
    Usage,
    /// The requested work failed: exit code 1.
    Failed,
}

impl CliError {
    /// A usage or configuration error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            kind: ErrorKind::Usage,
        }
    }

    /// Failed work (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            kind: ErrorKind::Failed,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self.kind {
            ErrorKind::Usage => ExitCode::from(2),
            ErrorKind::Failed => ExitCode::from(1),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<tenora::Error> for CliError {
    fn from(e: tenora::Error) -> Self {
        use tenora::secret::SecretError;
        // Problems with what the user gave us (config, ids, passwords, unsupported requests)
        // are usage errors; everything else is failed work.
        let kind = match &e {
            tenora::Error::Config { .. }
            | tenora::Error::InvalidTenantId { .. }
            | tenora::Error::Unsupported(_)
            | tenora::Error::FleetRun { .. }
            | tenora::Error::Secret(
                SecretError::BadPassword(_)
                | SecretError::InvalidKey(_)
                | SecretError::MissingKey(_)
                | SecretError::PlaintextRefused(_)
                | SecretError::PlaintextWithKey(_),
            ) => ErrorKind::Usage,
            _ => ErrorKind::Failed,
        };
        CliError {
            message: tenora::redact_url(&e.to_string()),
            kind,
        }
    }
}
