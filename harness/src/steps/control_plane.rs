//! `control_plane`: stops, restarts or drops the connections of the mock control plane.
use super::Ctx;
use crate::scenario::CpAction;
use anyhow::Result;

/// Applies the action; `Err` when the control plane cannot be restarted.
pub async fn run(ctx: &mut Ctx<'_>, a: &CpAction) -> Result<()> {
    let cp = ctx.env.cp.as_ref().expect("validated");
    match a {
        CpAction::Stop => cp.stop().await,
        CpAction::Start => cp.restart().await?,
        CpAction::Drop => cp.drop_connections(),
    }
    Ok(())
}
