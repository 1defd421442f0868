//! Where the server's log lines go and in what shape: human-readable text by
//! default, or one JSON object per line (`log_format = "json"`,
//! `--log-format json`) for a cluster's log collector, each line carrying
//! the node's `node_id` so lines from several nodes can be told apart.

use std::fmt;

use serde::Deserialize;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The shape of a log line. Unknown names are refused by clap and serde,
/// both naming the accepted ones (`text`, `json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text, one event per line.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`), and `node_id` in cluster mode.
    Json,
}

/// Installs the global subscriber, filtered by `RUST_LOG` (default `info`),
/// writing to standard error. `node_id` (cluster mode) goes into every JSON
/// line; in text it is left out, as the line is read by a person on one node.
pub fn init(format: LogFormat, node_id: Option<&str>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            let inner = tracing_subscriber::fmt::format().json();
            // A plain string: serde_json escapes it, so it can only ever
            // be a JSON string (node_id is validated anyway).
            let node = node_id.and_then(|id| serde_json::to_string(id).ok());
            builder
                .event_format(WithNodeId { node, inner })
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .init()
        }
    }
}

/// The JSON formatter with a leading `"node_id":…` member. Spans would not
/// do: a span entered in `main` does not follow the tasks tokio spawns.
struct WithNodeId<F> {
    /// The node id already encoded as a JSON string; `None`: single node.
    node: Option<String>,
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for WithNodeId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(node) = &self.node else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"node_id\":{node},{rest}"),
            None => writer.write_str(&line),
        }
    }
}
