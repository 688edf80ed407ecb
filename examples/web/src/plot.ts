// A small canvas line plot of the loss, redrawn after every step.
export interface Series {
  label: string;
  color: string;
  values: number[];
}

export function drawLoss(canvas: HTMLCanvasElement, series: readonly Series[], totalSteps: number): void {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const { width: w, height: h } = canvas;
  const pad = { l: 46, r: 12, t: 12, b: 26 };
  ctx.clearRect(0, 0, w, h);
  const all = series.flatMap((s) => s.values).filter(Number.isFinite);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#5a6375';
  if (!all.length) {
    ctx.fillText('the loss appears here while training', pad.l, h / 2);
    return;
  }
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
  const steps = Math.max(totalSteps, ...series.map((s) => s.values.length), 2);
  const x = (i: number): number => pad.l + ((w - pad.l - pad.r) * i) / (steps - 1);
  const y = (v: number): number => pad.t + ((h - pad.t - pad.b) * (hi - v)) / (hi - lo);
  ctx.strokeStyle = '#e3e6ec';
  ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.l, y(v));
    ctx.lineTo(w - pad.r, y(v));
    ctx.stroke();
    ctx.fillText(v.toFixed(2), 4, y(v) + 4);
  }
  ctx.fillText(`step ${steps}`, w - pad.r - 50, h - 8);
  ctx.fillText('loss', pad.l, h - 8);
  let legendX = pad.l + 40;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    s.values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
    ctx.stroke();
    ctx.fillStyle = s.color;
    ctx.fillText(s.label, legendX, h - 8);
    legendX += ctx.measureText(s.label).width + 16;
  }
}
