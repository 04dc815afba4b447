// A labelled progress bar (role=progressbar with its value for screen readers).
export function Progress(props: { value: number; label: string; tone?: 'ok' | 'error' | 'muted' }) {
  const value = Math.max(0, Math.min(100, props.value));
  return (
    <div
      className={`progress ${props.tone ?? ''}`}
      role="progressbar"
      aria-label={props.label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(value)}
      aria-valuetext={`${value.toFixed(1)} %`}
    >
      <div className="progress-fill" style={{ width: `${value}%` }} />
    </div>
  );
}
