// The assistant picker of every form that starts tasks (new task,
// schedules, webhooks): installed assistants first-class, missing ones
// shown disabled with how to install them.
import { useEffect, useState } from "preact/hooks";
import { api, type Assistant } from "../api";
import { field } from "../form";
import { toast } from "../toast";

let cached: Promise<{ default: string; assistants: Assistant[] }> | null = null;

/** The server's assistants, fetched once per page. */
export function useAssistants(): { default: string; assistants: Assistant[] } | null {
  const [a, setA] = useState<{ default: string; assistants: Assistant[] } | null>(null);
  useEffect(() => {
    cached ??= api.assistants();
    cached.then(setA).catch((e) => {
      cached = null;
      toast(e);
    });
  }, []);
  return a;
}

/**
 * `value` "" means the server's default (shown as such); `allowDefault`
 * offers that choice, for triggers that should follow the default.
 */
export function AssistantSelect(props: {
  id: string;
  value: string;
  onChange: (v: string) => void;
  allowDefault?: boolean;
}) {
  const a = useAssistants();
  const list = a?.assistants ?? [];
  return (
    <select id={props.id} value={props.value} onChange={field(props.onChange)}>
      {props.allowDefault && <option value="">default{a ? ` (${a.default})` : ""}</option>}
      {list.map((x) => (
        <option
          key={x.name}
          value={x.name}
          disabled={!x.available}
          title={x.available ? (x.description ?? "") : `not installed${x.install ? `: ${x.install}` : ""}`}
        >
          {x.available ? x.name : `${x.name} (not installed)`}
        </option>
      ))}
    </select>
  );
}
