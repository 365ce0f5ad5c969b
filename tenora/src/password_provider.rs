//! Tenant passwords from outside the registry: a provider set on the builder
//! ([`TenoraBuilder::passwords`](crate::TenoraBuilder::passwords)), or the command of
//! `secrets.password_command`, like git's credential helpers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{BoxError, Error, Result};
use crate::secret::SecretString;
use crate::tenant_id::TenantId;

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Gives a tenant's database password from outside the registry; `None` means "use the
/// registry's".
pub(crate) type PasswordProvider = dyn Fn(TenantId) -> BoxFuture<std::result::Result<Option<SecretString>, BoxError>>
    + Send
    + Sync;

/// Wraps an app's provider function.
pub(crate) fn boxed<F, Fut, E>(provider: F) -> Arc<PasswordProvider>
where
    F: Fn(TenantId) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Option<SecretString>, E>> + Send + 'static,
    E: Into<BoxError>,
{
    let provider = Arc::new(provider);
    Arc::new(move |id| {
        let provider = Arc::clone(&provider);
        Box::pin(async move { provider(id).await.map_err(Into::into) })
    })
}

/// Asks `provider` for tenant `id`'s password.
pub(crate) async fn ask(
    provider: &PasswordProvider,
    id: &TenantId,
) -> Result<Option<SecretString>> {
    provider(id.clone())
        .await
        .map_err(|source| Error::PasswordProvider {
            id: id.clone(),
            source,
        })
}

/// The provider of `secrets.password_command`: `{id}` in each argument becomes the tenant id;
/// the program runs without a shell, with `timeout`; its standard output, without the final
/// line break, is the password (empty: use the registry's). Neither its output nor its
/// arguments are logged.
pub(crate) fn command(command: &str, timeout: Duration) -> Arc<PasswordProvider> {
    let words: Arc<Vec<String>> = Arc::new(command.split_whitespace().map(str::to_owned).collect());
    Arc::new(move |id: TenantId| {
        let words = Arc::clone(&words);
        Box::pin(async move { run(&words, &id, timeout).await.map_err(BoxError::from) })
    })
}

async fn run(
    words: &[String],
    id: &TenantId,
    timeout: Duration,
) -> std::result::Result<Option<SecretString>, String> {
    let args: Vec<String> = words
        .iter()
        .map(|w| w.replace("{id}", id.as_str()))
        .collect();
    let (program, args) = args
        .split_first()
        .ok_or("secrets.password_command is empty")?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run secrets.password_command `{program}`: {e}"))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "secrets.password_command `{program}` did not finish within {} s \
                 (secrets.password_command_timeout); it was stopped",
                timeout.as_secs()
            )
        })?
        .map_err(|e| format!("secrets.password_command `{program}` failed: {e}"))?;
    let stdout = zeroize::Zeroizing::new(output.stdout);
    if !output.status.success() {
        // Its standard error may explain (it never holds the password: that is stdout).
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let last: String = last.chars().take(200).collect();
        return Err(format!(
            "secrets.password_command `{program}` exited with {}{}",
            output.status,
            if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            }
        ));
    }
    let text = std::str::from_utf8(&stdout)
        .map_err(|_| format!("secrets.password_command `{program}` printed something not UTF-8"))?;
    let password = text.strip_suffix('\n').unwrap_or(text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Ok(None);
    }
    Ok(Some(SecretString::new(password)))
}
