//! `parity schema`: prints the JSON Schema of scenario files.

/// Prints the schema; exit code 0.
pub fn run() -> i32 {
    let s = schemars::schema_for!(crate::scenario::Scenario);
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
    0
}
