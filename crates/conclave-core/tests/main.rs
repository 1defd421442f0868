//! The meeting core's rule suites, one binary: each module is one family of
//! rules, driven on a virtual clock through the one harness in `support`.
//! Run one family with `cargo test -p conclave-core --test rules -- NAME::`.

mod support;

mod app_rules;
mod breakout_rules;
mod chat_resume_rules;
mod group_rules;
mod live_rules;
mod media_rules;
mod meeting_rules;
mod mls_at_the_limit;
mod publishing_rules;
mod recording_rules;
