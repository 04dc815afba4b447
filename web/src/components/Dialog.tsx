// A modal dialog on the native <dialog> element: focus moves inside, Escape closes, Enter in a
// field submits the form, focus returns to what opened it.
import { useEffect, useRef, type FormEvent, type ReactNode } from 'react';

export function Dialog(props: {
  title: string;
  onClose: () => void;
  onSubmit?: () => void;
  submitLabel?: string;
  submitDisabled?: boolean;
  busy?: boolean;
  children: ReactNode;
  wide?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    const opener = document.activeElement as HTMLElement | null;
    if (dialog && !dialog.open) dialog.showModal();
    return () => opener?.focus?.();
  }, []);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!props.submitDisabled && !props.busy) props.onSubmit?.();
  };
  const titleId = `dlg-${props.title.replace(/\W+/g, '-').toLowerCase()}`;
  return (
    <dialog
      ref={ref}
      className={props.wide ? 'dialog wide' : 'dialog'}
      aria-labelledby={titleId}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
    >
      <form method="dialog" onSubmit={submit}>
        <h2 id={titleId}>{props.title}</h2>
        <div className="dialog-body">{props.children}</div>
        <div className="dialog-actions">
          <button type="button" className="btn ghost" onClick={props.onClose}>
            {props.onSubmit ? 'Cancel' : 'Close'}
          </button>
          {props.onSubmit && (
            <button type="submit" className="btn primary" disabled={props.submitDisabled || props.busy}>
              {props.busy ? 'Working…' : (props.submitLabel ?? 'OK')}
            </button>
          )}
        </div>
      </form>
    </dialog>
  );
}
