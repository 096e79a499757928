//! Loading scenario files: the YAML text is parsed with `serde_yaml_ng` into the
//! [model](super::model), a [`LineMap`] built from the YAML event stream gives every
//! field path its line, and the [cross-checks](super::check) run on the result.

use super::check::check;
use super::model::Scenario;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A scenario together with its source file.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed scenario.
    pub scenario: Scenario,
    /// Where it came from.
    pub file: PathBuf,
}

/// A validation error: file, 1-based line (0 when unknown), field path, message.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when not known.
    pub line: usize,
    /// Field path, e.g. `steps[2].send.count`; `.` for the document.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: field `{}`: {}", self.file.display(), self.line, self.field, self.message)
    }
}

/// Maps field paths (`steps[2].send.count`) to the 1-based line where that node starts,
/// from the YAML event stream (yaml-rust2 markers).
#[derive(Debug, Default)]
pub struct LineMap {
    lines: HashMap<String, usize>,
}

impl LineMap {
    /// Builds the map; a text that does not scan gives an empty map.
    pub fn build(text: &str) -> LineMap {
        use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
        use yaml_rust2::scanner::Marker;
        enum Frame {
            Map { path: String, key: Option<String>, expect_key: bool },
            Seq { path: String, idx: usize },
        }
        struct Recv {
            stack: Vec<Frame>,
            lines: HashMap<String, usize>,
        }
        fn join(base: &str, key: &str) -> String {
            if base.is_empty() {
                key.to_string()
            } else {
                format!("{base}.{key}")
            }
        }
        impl Recv {
            /// Path of the node that starts now, and advance the parent.
            fn node_path(&mut self) -> Option<String> {
                match self.stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Seq { path, idx }) => {
                        let p = format!("{path}[{idx}]");
                        *idx += 1;
                        Some(p)
                    }
                    Some(Frame::Map { path, key, expect_key }) => {
                        if *expect_key {
                            None
                        } else {
                            *expect_key = true;
                            key.take().map(|k| join(path, &k))
                        }
                    }
                }
            }
        }
        impl MarkedEventReceiver for Recv {
            fn on_event(&mut self, ev: Event, mark: Marker) {
                let line = mark.line();
                match ev {
                    Event::Scalar(s, ..) => {
                        if let Some(Frame::Map { path, key, expect_key }) = self.stack.last_mut() {
                            if *expect_key {
                                *expect_key = false;
                                self.lines.entry(join(path, &s)).or_insert(line);
                                *key = Some(s);
                                return;
                            }
                        }
                        if let Some(p) = self.node_path() {
                            self.lines.entry(p).or_insert(line);
                        }
                    }
                    Event::Alias(_) => {
                        self.node_path();
                    }
                    Event::MappingStart(..) => {
                        let p = self.node_path().unwrap_or_default();
                        self.lines.entry(p.clone()).or_insert(line);
                        self.stack.push(Frame::Map { path: p, key: None, expect_key: true });
                    }
                    Event::SequenceStart(..) => {
                        let p = self.node_path().unwrap_or_default();
                        self.lines.entry(p.clone()).or_insert(line);
                        self.stack.push(Frame::Seq { path: p, idx: 0 });
                    }
                    Event::MappingEnd | Event::SequenceEnd => {
                        self.stack.pop();
                    }
                    _ => {}
                }
            }
        }
        let mut r = Recv { stack: Vec::new(), lines: HashMap::new() };
        let mut p = Parser::new_from_str(text);
        let _ = p.load(&mut r, false);
        LineMap { lines: r.lines }
    }

    /// Line of `path`, or of its nearest ancestor that has one; 0 when none.
    pub fn line(&self, path: &str) -> usize {
        let mut p = path.to_string();
        loop {
            if let Some(l) = self.lines.get(&p) {
                return *l;
            }
            // strip the last segment
            let cut = p.rfind(['.', '[']);
            match cut {
                Some(i) => p.truncate(i),
                None => return self.lines.get("").copied().unwrap_or(0),
            }
        }
    }
}

/// Parses and checks one scenario text. `file` is only used in errors.
pub fn parse(text: &str, file: &Path) -> Result<Scenario, Vec<ScenarioError>> {
    let map = LineMap::build(text);
    // Enums are written as one-key maps (`- send: {...}`), not YAML tags.
    let yaml = serde_yaml_ng::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(yaml, &mut track);
    let res: Result<Scenario, serde_yaml_ng::Error> = serde_yaml_ng::with::singleton_map_recursive::deserialize(de);
    let sc: Scenario = match res {
        Ok(s) => s,
        Err(inner) => {
            let field = track.path().to_string();
            let line = inner
                .location()
                .map(|l| l.line())
                .filter(|l| *l > 0)
                .unwrap_or_else(|| map.line(&field));
            let mut msg = inner.to_string();
            // serde_yaml_ng appends " at line L column C"; the line is reported separately.
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            // and may start with the path of the mapping ("steps[0].send: unknown field").
            if let Some((head, rest)) = msg.split_once(": ") {
                if !head.contains(' ') && field.starts_with(head) {
                    msg = rest.to_string();
                }
            }
            return Err(vec![ScenarioError { file: file.to_path_buf(), line, field, message: msg }]);
        }
    };
    let errs = check(&sc, &map, file);
    if errs.is_empty() {
        Ok(sc)
    } else {
        Err(errs)
    }
}

/// Reads every `*.yaml`/`*.yml` file directly in `path` (a folder, sorted by name; `bench`
/// and other subfolders are skipped) or `path` itself (a file).
pub fn files_in(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        v.sort();
        Ok(v)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// Loads and checks files; also checks that ids are unique. All errors are returned.
pub fn load_all(files: &[PathBuf]) -> (Vec<Loaded>, Vec<ScenarioError>) {
    let mut ok: Vec<Loaded> = Vec::new();
    let mut errs = Vec::new();
    for f in files {
        match std::fs::read_to_string(f) {
            Err(e) => errs.push(ScenarioError { file: f.clone(), line: 0, field: ".".into(), message: e.to_string() }),
            Ok(text) => match parse(&text, f) {
                Ok(s) => {
                    if let Some(prev) = ok.iter().find(|l| l.scenario.id == s.id) {
                        errs.push(ScenarioError {
                            file: f.clone(),
                            line: LineMap::build(&text).line("id"),
                            field: "id".into(),
                            message: format!("id {:?} already used by {}", s.id, prev.file.display()),
                        });
                    } else {
                        ok.push(Loaded { scenario: s, file: f.clone() });
                    }
                }
                Err(mut e) => errs.append(&mut e),
            },
        }
    }
    (ok, errs)
}

