//! `toxic`: adds or removes a Toxiproxy toxic on one proxy, or disables/enables the proxy
//! ([`crate::toxiproxy`]). The change is in force when Toxiproxy's API has answered.
use super::Ctx;
use crate::toxiproxy::ToxicStep;
use anyhow::{Context, Result};

/// Applies the change; `Err` (a harness failure) when Toxiproxy refuses it or is not running.
pub async fn run(ctx: &mut Ctx<'_>, t: &ToxicStep) -> Result<()> {
    let toxi = ctx.env.toxi.as_ref().context("the toxic step needs the scenario's toxiproxy block")?;
    toxi.apply(t).await
}
