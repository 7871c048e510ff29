//! wasp's own log lines on stderr: text (colour only on a terminal) or JSON
//! lines, filtered by `WASP_LOG`.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use wasp_host::run::{DEFAULT_LOG_DIRECTIVES, log_directives};

/// The log format (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The filter of wasp's logs: the default shows wasp's own lines from
/// `info` (denials, start and end) and other crates' warnings only.
/// `WASP_LOG` replaces it; a bare level (`WASP_LOG=debug`) applies to
/// wasp's own lines, never to the compiler's (a full directive such as
/// `WASP_LOG=cranelift=debug` is taken as it is).
pub fn filter(wasp_log: Option<&str>) -> EnvFilter {
    let directives = log_directives(wasp_log);
    EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!(
            "wasp: warning: WASP_LOG={directives:?} is not a filter ({e}); using the default"
        );
        EnvFilter::new(DEFAULT_LOG_DIRECTIVES)
    })
}

/// Starts logging to stderr in `format`.
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("WASP_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_applies_to_wasp_only() {
        let shown = filter(Some("debug")).to_string();
        assert!(shown.contains("wasp=debug"), "{shown}");
        assert!(shown.contains("wasp_host=debug"), "{shown}");
        assert!(
            shown.starts_with("warn") || shown.contains(",warn") || shown.contains("warn,"),
            "{shown}"
        );
    }

    #[test]
    fn directives_are_taken_as_given() {
        assert_eq!(
            filter(Some("cranelift=debug")).to_string(),
            "cranelift=debug"
        );
    }
}
