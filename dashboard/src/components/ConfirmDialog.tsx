import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, type ReactNode, useEffect, useId, useRef, useState } from "react";
import { errorText } from "../api/client";

export interface Input {
  reason: string;
  weight: number;
  force: boolean;
}

export interface Action {
  title: string;
  /** What will happen, in the user's terms ("25 % → 50 % of users of group projects"), from
   * what the dialog holds (the weight typed, whether force is ticked). */
  effect: ReactNode | ((input: Input) => ReactNode);
  /** Ask for a number (set weight). */
  weight?: { initial: number };
  /** Offer "force" (promote past a closed gate; audited as forced). */
  force?: { label: string };
  run: (input: Input) => Promise<unknown>;
}

/** A modal that says what an action will do, takes a reason, and shows the service's refusal
 * in its own words. The native <dialog> traps focus and closes on Escape; once it is gone,
 * focus goes back to what opened it, so a keyboard user carries on from there. */
export function ConfirmDialog({ action, onClose }: { action: Action; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  const effectId = useId();
  const client = useQueryClient();
  const [reason, setReason] = useState("");
  const [weight, setWeight] = useState(action.weight?.initial ?? 0);
  const [force, setForce] = useState(false);
  const mutation = useMutation({
    mutationFn: action.run,
    onSuccess: () => {
      void client.invalidateQueries();
      onClose();
    },
  });
  useEffect(() => {
    const dialog = ref.current;
    const opener = document.activeElement;
    if (dialog && !dialog.open) dialog.showModal?.();
    // The first field (the weight, else the reason), whatever the browser's own choice.
    dialog?.querySelector<HTMLElement>("input, textarea")?.focus();
    return () => {
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
    };
  }, []);
  const input = { reason, weight, force };
  const effect = typeof action.effect === "function" ? action.effect(input) : action.effect;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    mutation.mutate(input);
  };
  return (
    <dialog ref={ref} aria-labelledby={titleId} aria-describedby={effectId} onClose={onClose} onCancel={onClose}>
      <form onSubmit={submit}>
        <h2 id={titleId}>{action.title}</h2>
        <p className="effect" id={effectId} aria-live="polite">
          {effect}
        </p>
        {action.weight && (
          <label>
            New weight (%)
            <input
              type="number"
              min={0}
              max={100}
              step="any"
              required
              value={weight}
              onChange={(event) => setWeight(Number(event.target.value))}
            />
          </label>
        )}
        <label>
          Reason (goes to the audit log)
          <textarea
            required
            maxLength={2000}
            value={reason}
            onChange={(event) => setReason(event.target.value)}
          />
        </label>
        {action.force && (
          <label className="inline">
            <input type="checkbox" checked={force} onChange={(event) => setForce(event.target.checked)} />
            {action.force.label}
          </label>
        )}
        {mutation.isError && (
          <p role="alert" className="error">
            Refused: {errorText(mutation.error)}
          </p>
        )}
        <div className="buttons">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={mutation.isPending}>
            {mutation.isPending ? "Working…" : "Confirm"}
          </button>
        </div>
      </form>
    </dialog>
  );
}
