//! Waiting for SIGINT (Ctrl-C) or SIGTERM.

/// Resolves with the signal's name when the process receives SIGINT or SIGTERM. If a
/// handler cannot be installed, that signal is logged and not waited for.
pub async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGINT");
                std::future::pending().await
            }
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                "SIGTERM"
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<&'static str>();
    tokio::select! {
        s = ctrl_c => s,
        s = term => s,
    }
}
