// A loss-per-step line chart on a <canvas>: axes with min/max labels, redrawn whole on each
// new point (a few hundred points draw in well under a millisecond).

/** Draws `points` ([{ step, loss }]) for a run of `totalSteps` steps. */
export function drawLossChart(canvas, points, totalSteps) {
  const ctx = canvas.getContext("2d");
  const { width: W, height: H } = canvas;
  const pad = { left: 56, right: 12, top: 12, bottom: 28 };
  const style = getComputedStyle(canvas);
  const fg = style.color || "#000";
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = fg;
  ctx.strokeStyle = fg;
  ctx.globalAlpha = 0.5;
  ctx.beginPath();
  ctx.moveTo(pad.left, pad.top);
  ctx.lineTo(pad.left, H - pad.bottom);
  ctx.lineTo(W - pad.right, H - pad.bottom);
  ctx.stroke();
  ctx.globalAlpha = 1;
  if (points.length === 0) {
    ctx.fillText("loss per step appears here while training", pad.left + 12, H / 2);
    return;
  }
  let lo = Math.min(...points.map((p) => p.loss));
  let hi = Math.max(...points.map((p) => p.loss));
  if (hi - lo < 1e-6) {
    lo -= 0.5;
    hi += 0.5;
  }
  const x = (step) => pad.left + ((step - 1) / Math.max(1, totalSteps - 1)) * (W - pad.left - pad.right);
  const y = (loss) => pad.top + ((hi - loss) / (hi - lo)) * (H - pad.top - pad.bottom);
  ctx.textAlign = "right";
  ctx.fillText(hi.toFixed(3), pad.left - 6, pad.top + 10);
  ctx.fillText(lo.toFixed(3), pad.left - 6, H - pad.bottom);
  ctx.textAlign = "center";
  ctx.fillText("step 1", pad.left + 18, H - 8);
  ctx.fillText(`step ${totalSteps}`, W - pad.right - 30, H - 8);
  ctx.strokeStyle = "#2457c5";
  ctx.lineWidth = 2;
  ctx.beginPath();
  for (const [i, p] of points.entries()) {
    if (i === 0) ctx.moveTo(x(p.step), y(p.loss));
    else ctx.lineTo(x(p.step), y(p.loss));
  }
  ctx.stroke();
  ctx.lineWidth = 1;
}
