//! `upstream`: changes a mock upstream (behaviour, health status, up/down, release).
use super::Ctx;
use crate::scenario::UpstreamAction;
use anyhow::Result;

/// Applies the action; `Err` when the upstream cannot be restarted (harness failure).
pub async fn run(ctx: &mut Ctx<'_>, u: &UpstreamAction) -> Result<()> {
    let up = &ctx.env.upstreams[&u.name];
    if let Some(b) = &u.behaviour {
        up.set_behaviour(b.clone()).await?;
    }
    if let Some(h) = u.health_status {
        up.set_health(h);
    }
    match u.up {
        Some(false) => up.down().await,
        Some(true) => up.up().await?,
        None => {}
    }
    if u.release == Some(true) {
        up.release();
    }
    Ok(())
}
