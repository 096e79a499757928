//! `push`: a config (or a raw frame) from the mock control plane, and the ack or nack
//! the router answers.
use super::Ctx;
use crate::control_plane::{config_frame, CpEvent};
use crate::scenario::Push;
use serde_json::{json, Value};
use std::time::Duration;

/// Pushes the frame (or the config, padded) and checks the answer.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, p: &Push) {
    let (frame, version, config_text) = if let Some(f) = &p.frame {
        (f.clone(), None, None)
    } else {
        let mut text = match (&p.config, &p.config_text) {
            (Some(c), _) => c.to_string(),
            (_, Some(t)) => t.clone(),
            _ => unreachable!("validated"),
        };
        if let Some(n) = p.pad_to_bytes {
            // Spaces inside the object (before its closing brace), so that they belong to
            // the config member's raw value, which is what the size limit measures.
            let pad = " ".repeat(n.saturating_sub(text.len()));
            match text.rfind('}') {
                Some(k) => text.insert_str(k, &pad),
                None => text.push_str(&pad),
            }
        }
        let version = serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("version").and_then(|x| x.as_u64()));
        (config_frame(&text), version, Some(text))
    };
    // A nack of a frame that is not a config has version null.
    // An ack is matched by version; a nack by its version when the scenario gives one,
    // else it is the first answer after the push.
    let want_version: Option<Option<u64>> = if let Some(n) = &p.nack { n.version } else { Some(p.ack.or(version)) };
    let idx = match ctx.env.cp.as_ref().expect("validated").send_frame(frame) {
        Ok(i) => i,
        Err(e) => {
            ctx.obs(i, "push", json!({"sent": false}));
            ctx.fail(i, "push", format!("{e}"));
            return;
        }
    };
    let ans = ctx.env.cp.as_ref().expect("validated").answer(idx, want_version, Duration::from_millis(p.within_ms)).await;
    let seen = match &ans {
        Some(CpEvent::Ack { version }) => json!({"ack": version}),
        Some(CpEvent::Nack { version, code, path }) => json!({"nack": {"version": version, "code": code, "path": path}}),
        _ => json!({"answer": null}),
    };
    ctx.obs(i, "push", seen.clone());
    match (&ans, p.ack, &p.nack) {
        (Some(CpEvent::Ack { version }), Some(v), _) if *version == Some(v) => {
            if let Some(t) = config_text {
                ctx.env.cp.as_ref().expect("validated").set_current(t);
            }
        }
        (Some(CpEvent::Nack { code, path, version }), _, Some(n)) => {
            if *code != n.code {
                ctx.fail(i, "push", format!("nack code {code:?}, expected {:?} ({seen})", n.code));
            }
            if let Some(want) = &n.path {
                if path != want {
                    ctx.fail(i, "push", format!("nack path {path:?}, expected {want:?}"));
                }
            }
            if let Some(want) = n.version {
                if *version != want {
                    ctx.fail(i, "push", format!("nack version {version:?}, expected {want:?}"));
                }
            }
        }
        _ => {
            let all: Vec<_> = ctx.env.cp.as_ref().expect("validated").events().into_iter().skip(idx).collect();
            ctx.fail(
                i,
                "push",
                format!("expected {} within {} ms; saw {seen}; frames since the push: {all:?}", if p.ack.is_some() { format!("ack {:?}", p.ack) } else { format!("nack {:?}", p.nack.as_ref().map(|n| &n.code)) }, p.within_ms),
            );
        }
    }
}
