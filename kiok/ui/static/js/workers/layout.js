// The graph layout off the page's thread: a large DAG's dagre layout takes long enough to
// freeze the page, so above a few hundred tasks it runs here. One message in (the tasks),
// one out (the layout, or the error).
import { layout } from "../graphlayout.js";

self.onmessage = (event) => {
  try {
    self.postMessage({ ok: true, shape: layout(event.data.tasks) });
  } catch (err) {
    self.postMessage({ ok: false, error: String(err && err.message ? err.message : err) });
  }
};
