// Small helpers for controlled form fields.

/** An onInput handler that stores the field's value. */
export function field(set: (v: string) => void) {
  return (e: Event) => set((e.target as HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement).value);
}
