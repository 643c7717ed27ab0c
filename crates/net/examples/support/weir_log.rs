//! Weir's `tracing` events (feature `tracing`) as lines of text: a minimal subscriber that
//! hands each event's message and fields, at `INFO` and above, to a sink. The examples print
//! them to stderr; tests collect them.

// Each user takes the parts it needs.
#![allow(dead_code)]

/// Installs, for the whole process, a subscriber that passes each event to `sink` as one line.
/// Without the `tracing` feature there are no events and this does nothing.
pub(crate) fn install(sink: fn(String)) {
    #[cfg(feature = "tracing")]
    {
        let lines = lines::Lines {
            sink,
            next_span: std::sync::atomic::AtomicU64::new(1),
        };
        // Already set (a second call): the first subscriber stays.
        let _ = tracing::subscriber::set_global_default(lines);
    }
    #[cfg(not(feature = "tracing"))]
    let _ = sink;
}

/// Prints each event to stderr.
pub(crate) fn to_stderr(line: String) {
    eprintln!("{line}");
}

#[cfg(feature = "tracing")]
mod lines {
    use std::fmt::{Debug, Write};
    use std::sync::atomic::{AtomicU64, Ordering};

    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Metadata, span};

    pub(crate) struct Lines {
        pub(crate) sink: fn(String),
        pub(crate) next_span: AtomicU64,
    }

    impl tracing::Subscriber for Lines {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= Level::INFO
        }

        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
        }

        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

        fn event(&self, event: &Event<'_>) {
            let mut line = String::new();
            event.record(&mut Text(&mut line));
            (self.sink)(line);
        }

        fn enter(&self, _: &span::Id) {}

        fn exit(&self, _: &span::Id) {}
    }

    /// Writes the message as is and other fields as ` name=value`.
    struct Text<'a>(&'a mut String);

    impl Visit for Text<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            let _ = if field.name() == "message" {
                write!(self.0, "{value:?}")
            } else {
                write!(self.0, " {}={value:?}", field.name())
            };
        }
    }
}
