// The app's own confirmation dialog (a modal <dialog>, styled like the
// app, keyboard and screen-reader friendly) instead of window.confirm.
// `await confirmAction({...})` resolves true when the user confirms.
import { render } from "preact";
import { useEffect, useRef } from "preact/hooks";

export interface ConfirmOptions {
  title: string;
  body?: string;
  /** The confirming button's label, e.g. "Delete". */
  action: string;
  danger?: boolean;
}

function Dialog(props: ConfirmOptions & { done: (ok: boolean) => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  return (
    <dialog
      ref={ref}
      class="confirm"
      aria-labelledby="confirm-title"
      onCancel={(e) => {
        e.preventDefault();
        props.done(false);
      }}
    >
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          props.done(true);
        }}
      >
        <h2 id="confirm-title">{props.title}</h2>
        {props.body && <p>{props.body}</p>}
        <div class="row">
          <button type="submit" class={props.danger ? "danger" : "primary"}>
            {props.action}
          </button>
          <button type="button" autofocus onClick={() => props.done(false)}>
            Cancel
          </button>
        </div>
      </form>
    </dialog>
  );
}

export function confirmAction(opts: ConfirmOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const host = document.createElement("div");
    document.body.appendChild(host);
    const done = (ok: boolean) => {
      render(null, host);
      host.remove();
      resolve(ok);
    };
    render(<Dialog {...opts} done={done} />, host);
  });
}
