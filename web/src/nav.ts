// Moving between views: the URL fragment is the only navigation state.
import { routeHash, type Route } from "./state";

export function go(r: Route): void {
  location.hash = routeHash(r);
}
