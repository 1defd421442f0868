//! The native side of `bench/mls-wasm.mjs`: the delivery service and the native members of a
//! group that one browser member (the wasm module in Chromium) joins at 100, 300 and 1,000.
//!
//! ```text
//! cargo build --release -p conclave-e2ee --example mls_wasm_peer
//! bench/mls-wasm            # runs this through node bench/mls-wasm.mjs
//! ```
//!
//! It speaks JSON lines: on standard output one request to the browser at a time
//! (`{"op":"new","id":..}`, `join`, `handle`, `update`, `confirm`, `report`, `done`), and on
//! standard input the answer (`{"ms":..,"bytes":"base64"}`). The group grows as the server
//! grows it: batches of up to 50 added by member 1's commit, then the newcomers whose update
//! would fill the tree (`DeliveryService::update_would_fill`) update. At each mark the browser
//! member joins by Welcome and the server's tree, processes three of member 1's update commits,
//! makes three update commits of its own (accepted by the delivery service, processed by
//! member 1), and is removed again. The same run times member 1 doing the same natively.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use conclave_e2ee::{DeliveryService, Member, Received};
use data_encoding::BASE64;
use serde_json::{Value, json};

const BATCH: usize = 50;
const REPEAT: usize = 3;

struct Browser {
    lines: std::io::Lines<std::io::StdinLock<'static>>,
}

impl Browser {
    /// One request to the page; its answer.
    fn ask(&mut self, request: Value) -> Value {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{request}").expect("stdout");
        out.flush().expect("stdout");
        let line = self.lines.next().expect("an answer").expect("stdin");
        let answer: Value = serde_json::from_str(&line).expect("JSON");
        if let Some(e) = answer.get("error") {
            panic!("the browser failed: {e}");
        }
        answer
    }
}

fn bytes_of(answer: &Value) -> Vec<u8> {
    BASE64
        .decode(answer["bytes"].as_str().expect("bytes").as_bytes())
        .expect("base64")
}

fn ms_of(answer: &Value) -> f64 {
    answer["ms"].as_f64().expect("ms")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Group {
    ds: DeliveryService,
    /// Member 1, who commits every batch.
    first: Member,
    ids: Vec<String>,
    next_id: usize,
}

impl Group {
    fn announce(&mut self, extra: Option<&str>) {
        let mut ids = self.ids.clone();
        ids.extend(extra.map(str::to_string));
        self.first.set_announced(ids);
    }

    /// The server proposes `proposals`; member 1 commits them; the server accepts.
    fn commit(&mut self, proposals: &[Vec<u8>]) -> (Vec<u8>, Option<Vec<u8>>) {
        for p in proposals {
            self.first.handle(p).expect("proposal");
        }
        let out = self.first.commit().expect("commit").expect("something");
        self.ds.accept_commit(&out.commit).expect("accepted");
        self.first.confirm_commit().expect("own commit");
        (out.commit, out.welcome)
    }

    /// Adds `n` native members in one commit; those whose update would fill the tree update.
    fn grow(&mut self, n: usize) {
        let mut newcomers = Vec::new();
        let mut proposals = Vec::new();
        for _ in 0..n {
            let id = self.next_id.to_string();
            self.next_id += 1;
            let m = Member::new(&id).expect("member");
            proposals.push(
                self.ds
                    .propose_add(&m.key_package().expect("kp"))
                    .expect("add"),
            );
            self.ids.push(id);
            newcomers.push(m);
        }
        self.announce(None);
        let (_, welcome) = self.commit(&proposals);
        let welcome = welcome.expect("welcome");
        let tree = self.ds.ratchet_tree().expect("tree");
        for m in &mut newcomers {
            m.join(&welcome, &tree).expect("join");
        }
        // In order, as the server asks them; each update is processed by member 1 and the
        // newcomers still waiting for their turn.
        while !newcomers.is_empty() {
            let mut next = newcomers.remove(0);
            if !self
                .ds
                .update_would_fill(next.participant_id())
                .expect("a member")
            {
                continue;
            }
            let out = next.update().expect("update");
            self.ds.accept_commit(&out.commit).expect("update accepted");
            for m in &mut newcomers {
                m.handle(&out.commit).expect("update");
            }
            self.first.handle(&out.commit).expect("update");
        }
    }
}

fn main() {
    let marks: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a group size"))
        .collect();
    let marks = if marks.is_empty() {
        vec![100, 300, 1000]
    } else {
        marks
    };
    let mut browser = Browser {
        lines: std::io::stdin().lock().lines(),
    };
    let mut ds = DeliveryService::new().expect("ds");
    let mut first = Member::new("1").expect("member");
    let info = first
        .create_group(b"wasm-bench", &ds.external_sender())
        .expect("group");
    ds.observe_group(&info).expect("observe");
    let mut g = Group {
        ds,
        first,
        ids: vec!["1".into()],
        next_id: 2,
    };

    for mark in marks {
        while g.ids.len() < mark {
            let size = g.ids.len();
            g.grow((BATCH - size % BATCH).min(mark - size));
        }
        let id = format!("9{mark}");
        let kp = bytes_of(&browser.ask(json!({"op": "new", "id": id})));
        let add = g.ds.propose_add(&kp).expect("add the browser");
        g.announce(Some(&id));
        let (_, welcome) = g.commit(&[add]);
        let welcome = welcome.expect("welcome");
        let tree = g.ds.ratchet_tree().expect("tree");
        let join = ms_of(&browser.ask(json!({
            "op": "join",
            "welcome": BASE64.encode(&welcome),
            "tree": BASE64.encode(&tree),
        })));
        g.ids.push(id.clone());

        // The browser processes member 1's commits; member 1 creates them natively.
        let mut process = Vec::new();
        let mut native_create = Vec::new();
        for _ in 0..REPEAT {
            let start = Instant::now();
            let out = g.first.update().expect("update");
            native_create.push(ms(start.elapsed()));
            g.ds.accept_commit(&out.commit).expect("accepted");
            g.first.confirm_commit().expect("own update");
            let answer =
                browser.ask(json!({"op": "handle", "message": BASE64.encode(&out.commit)}));
            assert_eq!(answer["kind"], "commit");
            process.push(ms_of(&answer));
        }
        // The browser creates update commits; member 1 processes them natively.
        let mut create = Vec::new();
        let mut native_process = Vec::new();
        let mut commit_bytes = 0;
        for _ in 0..REPEAT {
            let answer = browser.ask(json!({"op": "update"}));
            create.push(ms_of(&answer));
            let commit = bytes_of(&answer);
            commit_bytes = commit.len();
            g.ds.accept_commit(&commit)
                .expect("the browser's commit accepted");
            let start = Instant::now();
            let r = g.first.handle(&commit).expect("the browser's commit");
            native_process.push(ms(start.elapsed()));
            assert!(matches!(r, Received::Commit { .. }));
            browser.ask(json!({"op": "confirm"}));
        }
        browser.ask(json!({
            "op": "report",
            "members": mark + 1,
            "tree_bytes": tree.len(),
            "welcome_bytes": welcome.len(),
            "commit_bytes": commit_bytes,
            "wasm_join_ms": join,
            "wasm_process_ms": median(process),
            "wasm_create_ms": median(create),
            "native_process_ms": median(native_process),
            "native_create_ms": median(native_create),
        }));

        // The browser leaves; the group goes on growing without it.
        let remove = g.ds.propose_remove(&id).expect("remove the browser");
        g.ids.pop();
        g.announce(None);
        g.commit(&[remove]);
    }
    browser.ask(json!({"op": "done"}));
}
