import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, type ReactNode, useEffect, useId, useRef, useState } from "react";
import { errorText } from "../api/client";

export interface Action {
  title: string;
  /** What will happen, in the user's terms ("25 % → 50 % of users of group projects"). */
  effect: ReactNode;
  /** Ask for a number (set weight). */
  weight?: { initial: number };
  /** Offer "force" (promote past a closed gate; audited). */
  canForce?: boolean;
  /** Whether a reason is required (every stage change; a noise review may go without). */
  reasonRequired?: boolean;
  run: (input: { reason: string; weight: number; force: boolean }) => Promise<unknown>;
}

/** A modal that says what an action will do, takes a reason, and shows the service's refusal
 * in its own words. The native <dialog> traps focus and closes on Escape. */
export function ConfirmDialog({ action, onClose }: { action: Action; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
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
    if (dialog && !dialog.open) dialog.showModal?.();
  }, []);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    mutation.mutate({ reason, weight, force });
  };
  return (
    <dialog ref={ref} aria-labelledby={titleId} onClose={onClose} onCancel={onClose}>
      <form onSubmit={submit}>
        <h2 id={titleId}>{action.title}</h2>
        <p className="effect">{action.effect}</p>
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
            required={action.reasonRequired ?? true}
            maxLength={2000}
            value={reason}
            onChange={(event) => setReason(event.target.value)}
          />
        </label>
        {action.canForce && (
          <label className="inline">
            <input type="checkbox" checked={force} onChange={(event) => setForce(event.target.checked)} />
            Force past a closed evidence or SLO budget gate (audited)
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
