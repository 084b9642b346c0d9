// <d365-push-button domain="acme.example">: push one Hunter lead to Dynamics 365 and show its sync
// badge (not in Dynamics, queued, syncing, retrying with the next attempt, synced, error with the
// reason) and an "Open in Dynamics" link. <d365-replay-button>: for operators (app role
// Leads.Replay), move failed pushes from the poison queue back to the queue. One file, no
// dependencies, no framework; Hunter copies or loads it.
//
// The host page owns sign-in (Hunter has its own MSAL instance) and hands the components a token
// getter and the API's base URL, once for every element or per element:
//
//   D365PushButton.configure({
//     apiBase: "https://func-api-xyz.azurewebsites.net/api",
//     getToken: async () => (await msal.acquireTokenSilent({scopes: [apiScope], account})).accessToken,
//   });
//   <d365-push-button domain="acme.example"></d365-push-button>
//   element.lead = {company_name: "Acme", final_score: 82};   // optional: the fields pushed with the domain
//
// What the person may do comes from the app roles in the API's access token (`roles`): Leads.Read
// (see statuses), Leads.Push (see and push), Leads.Replay (replay). The components only use them to
// decide what to offer — a push button disabled with the reason, the replay button shown or not; the
// API checks every call and its 401/403 are explained on the badge. A host page that holds the roles
// otherwise (or an opaque token) passes `roles: [...]` to configure. getToken returns null (or
// throws) when nobody is signed in: the button is then disabled and says to sign in.
// Events: `d365-status` (detail: the status body), `d365-replay` (detail: the replay counts).

const LABELS = {
  not_synced: "Not in Dynamics",
  queued: "Queued",
  syncing: "Syncing…",
  retrying: "Retrying",
  synced: "Synced",
  error: "Error",
  signed_out: "Signed out",
  forbidden: "Not allowed",
  unknown: "Unknown",
};
const FINAL = new Set(["synced", "error", "not_synced"]);
const ROLE_READ = "Leads.Read";
const ROLE_PUSH = "Leads.Push";
const ROLE_REPLAY = "Leads.Replay";
const defaults = { apiBase: "/api", getToken: async () => null, pollMs: 2000, roles: null };
let configured = false; // configure() was called: a replay button's check then counts
const replayButtons = new Set(); // connected <d365-replay-button>s: configure() makes them look again

// The app roles in a JWT access token's `roles` claim; null when the token is not a readable JWT
// (then nothing is held back: the API decides).
function rolesOf(token) {
  if (Array.isArray(defaults.roles)) return defaults.roles;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return Array.isArray(claims.roles) ? claims.roles : [];
  } catch {
    return null;
  }
}

async function call(element, method, path, body) {
  let token = null;
  try {
    token = await element.getToken();
  } catch {
    token = null;
  }
  if (!token) return { status: 401, body: null, roles: [] };
  const response = await fetch(`${element.apiBase}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, body: data, roles: rolesOf(token) };
}

// Layout that does not move: the badge has a fixed width, the link keeps its place while hidden
// (visibility, not display), and the detail line is always there, so a table's columns stay put.
const STYLE = `
:host { display: inline-grid; grid-template-columns: auto 9.5rem auto; column-gap: .5rem; row-gap: .2rem;
        align-items: center; justify-content: start; font: inherit; }
button { font: inherit; padding: .25rem .75rem; cursor: pointer; white-space: nowrap; }
button[disabled] { cursor: not-allowed; opacity: .55; }
button[aria-busy="true"] { cursor: progress; }
.badge { box-sizing: border-box; width: 9.5rem; text-align: center; white-space: nowrap; border-radius: 999px;
         padding: .1rem .4rem; font-size: .875em; font-weight: 600; border: 1px solid; }
.badge[data-status="not_synced"], .badge[data-status="unknown"] { color: #444; background: #f2f2f2; }
.badge[data-status="queued"], .badge[data-status="syncing"] { color: #0b4f8a; background: #e3f0fc; }
.badge[data-status="retrying"] { color: #7a4b00; background: #fff2d6; }
.badge[data-status="synced"] { color: #0d5c2e; background: #dff5e7; }
.badge[data-status="error"], .badge[data-status="forbidden"] { color: #8a1111; background: #fde4e4; }
.badge[data-status="signed_out"] { color: #555; background: #fff; border-style: dashed; }
.detail { grid-column: 1 / -1; min-height: 1.3em; font-size: .875em; color: #333; }
a { font-size: .875em; white-space: nowrap; }
a[data-hidden] { visibility: hidden; }
`;

export class D365PushButton extends HTMLElement {
  static configure(options) {
    Object.assign(defaults, options);
    configured = true;
    for (const element of replayButtons) element.refresh();
  }

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this.lead = {};
    this._timer = null;
    this._state = { status: "unknown" };
    this._roles = null;
    this._busy = false;
  }

  static get observedAttributes() {
    return ["domain"];
  }

  get apiBase() {
    return (this.getAttribute("api-base") || this._apiBase || defaults.apiBase).replace(/\/$/, "");
  }
  set apiBase(value) {
    this._apiBase = value;
  }
  get getToken() {
    return this._getToken || defaults.getToken;
  }
  set getToken(fn) {
    this._getToken = fn;
  }

  connectedCallback() {
    this.render();
    this.refresh();
  }

  disconnectedCallback() {
    clearTimeout(this._timer);
  }

  attributeChangedCallback() {
    if (this.isConnected) this.refresh();
  }

  async _fetch(method, path, body) {
    const answer = await call(this, method, path, body);
    this._roles = answer.status === 401 ? [] : answer.roles;
    return answer;
  }

  _refused(answer) {
    if (answer.status === 401) {
      this._roles = [];
      this.show({ status: "signed_out", message: "Sign in to see its status and push it." });
      return true;
    }
    if (answer.status === 403) {
      const role = answer.body?.role;
      const message =
        role === ROLE_PUSH
          ? `Pushing needs the app role ${ROLE_PUSH}; ask an administrator.`
          : `Seeing statuses needs the app role ${ROLE_READ}; ask an administrator.`;
      this.show({ ...(role === ROLE_PUSH ? this._state : {}), status: "forbidden", message });
      return true;
    }
    return false;
  }

  // Why the person may not push right now, or "" when they may.
  _pushRefusal() {
    const status = this._state.status;
    if (status === "signed_out") return "Sign in to push";
    if (this._roles !== null && !this._roles.includes(ROLE_PUSH)) {
      return status === "forbidden" && !this._roles.includes(ROLE_READ)
        ? "You hold no app role for Dynamics pushes"
        : `View only: pushing needs the app role ${ROLE_PUSH}`;
    }
    return "";
  }

  async refresh() {
    const domain = this.getAttribute("domain");
    if (!domain) return;
    clearTimeout(this._timer);
    let answer;
    try {
      answer = await this._fetch("GET", `/v1/d365/leads/${encodeURIComponent(domain)}`);
    } catch (error) {
      this.show({ status: "unknown", message: `The lead push API could not be reached (${error.message}).` });
      return;
    }
    if (this._refused(answer)) return;
    if (answer.status !== 200 || !answer.body) {
      this.show({ status: "unknown", message: answer.body?.message || `HTTP ${answer.status}` });
      return;
    }
    this.show(answer.body);
    if (!FINAL.has(answer.body.status)) {
      this._timer = setTimeout(() => this.refresh(), Number(this.getAttribute("poll-ms")) || defaults.pollMs);
    }
  }

  async push() {
    if (this._busy || this._pushRefusal()) return;
    const domain = this.getAttribute("domain");
    this._busy = true;
    this.render();
    try {
      const answer = await this._fetch("POST", "/v1/d365/push-lead", { ...this.lead, domain });
      if (this._refused(answer)) return;
      if (answer.status !== 202) {
        this.show({ status: "error", last_error: answer.body?.message || `HTTP ${answer.status}` });
        return;
      }
      this.show({ ...this._state, status: "queued", last_error: null, next_attempt_at: null });
      await this.refresh();
    } catch (error) {
      this.show({ status: "unknown", message: `The lead push API could not be reached (${error.message}).` });
    } finally {
      this._busy = false;
      this.render();
    }
  }

  show(state) {
    this._state = state;
    this.render();
    this.dispatchEvent(new CustomEvent("d365-status", { detail: state, bubbles: true, composed: true }));
  }

  render() {
    const state = this._state;
    const status = state.status in LABELS ? state.status : "unknown";
    const root = this.shadowRoot;
    if (!root.querySelector("button")) {
      root.innerHTML = `<style>${STYLE}</style>
        <button type="button" part="button">Push to Dynamics</button>
        <span class="badge" part="badge" role="status" aria-live="polite"></span>
        <a part="link" target="_blank" rel="noopener" data-hidden>Open in Dynamics</a>
        <span class="detail" part="detail"></span>`;
      root.querySelector("button").addEventListener("click", () => this.push());
    }
    const domain = this.getAttribute("domain") || "";
    const button = root.querySelector("button");
    const refusal = this._pushRefusal();
    button.disabled = this._busy || !!refusal;
    button.setAttribute("aria-busy", String(this._busy));
    button.title = refusal;
    button.setAttribute("aria-label", `Push ${domain} to Dynamics${refusal ? ` (${refusal})` : ""}`);
    const badge = root.querySelector(".badge");
    badge.dataset.status = status;
    badge.textContent = LABELS[status];
    let detail = state.message || "";
    if (status === "retrying" && state.next_attempt_at) {
      detail = `next attempt ${new Date(state.next_attempt_at).toLocaleTimeString()}`;
      if (state.last_error) detail += ` — ${state.last_error}`;
    } else if (status === "error") {
      detail = state.last_error || state.message || "the push failed";
    }
    if (refusal && status !== "signed_out" && status !== "forbidden") {
      detail = detail ? `${detail} · ${refusal}` : `${refusal}.`;
    }
    root.querySelector(".detail").textContent = detail;
    const link = root.querySelector("a");
    if (state.d365_url) {
      link.href = state.d365_url;
      link.removeAttribute("data-hidden");
      link.removeAttribute("aria-hidden");
      link.tabIndex = 0;
      link.setAttribute("aria-label", `Open ${domain} in Dynamics`);
    } else {
      link.setAttribute("data-hidden", "");
      link.setAttribute("aria-hidden", "true");
      link.tabIndex = -1;
      link.removeAttribute("href");
    }
    root.host.dataset.status = status;
    root.host.dataset.canPush = String(!refusal);
  }
}

// <d365-replay-button>: shown to holders of Leads.Replay only (or to everybody signed in when the
// roles cannot be read; the API then decides); replays the poison queue and says how many moved.
export class D365ReplayButton extends HTMLElement {
  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this.hidden = true;
  }

  get apiBase() {
    return (this.getAttribute("api-base") || defaults.apiBase).replace(/\/$/, "");
  }
  get getToken() {
    return defaults.getToken;
  }

  connectedCallback() {
    replayButtons.add(this);
    this.shadowRoot.innerHTML = `<style>
        :host { display: inline-flex; align-items: center; gap: .5rem; font: inherit; }
        :host([hidden]) { display: none; }
        button { font: inherit; padding: .25rem .75rem; cursor: pointer; white-space: nowrap; }
        .result { font-size: .875em; color: #333; }
      </style>
      <button type="button" part="button">Replay failed pushes</button>
      <span class="result" part="result" role="status" aria-live="polite"></span>`;
    this.shadowRoot.querySelector("button").addEventListener("click", () => this.replay());
    this.refresh();
  }

  disconnectedCallback() {
    replayButtons.delete(this);
  }

  // Shown when the signed-in person holds Leads.Replay (or the roles cannot be read).
  async refresh() {
    let token = null;
    try {
      token = await this.getToken();
    } catch {
      token = null;
    }
    const roles = token ? rolesOf(token) : [];
    this.hidden = !token || (roles !== null && !roles.includes(ROLE_REPLAY));
    if (configured) this.dataset.ready = "true";
  }

  async replay() {
    const button = this.shadowRoot.querySelector("button");
    const result = this.shadowRoot.querySelector(".result");
    button.disabled = true;
    try {
      const answer = await call(this, "POST", "/v1/d365/poison/replay");
      if (answer.status === 200 && answer.body) {
        const { replayed = 0, invalid = 0 } = answer.body;
        result.textContent = `Replayed ${replayed} failed push${replayed === 1 ? "" : "es"}` + (invalid ? `, ${invalid} invalid left aside` : "");
        this.dispatchEvent(new CustomEvent("d365-replay", { detail: answer.body, bubbles: true, composed: true }));
      } else {
        result.textContent = answer.status === 403 ? `Replaying needs the app role ${ROLE_REPLAY}.` : answer.body?.message || `HTTP ${answer.status}`;
      }
    } catch (error) {
      result.textContent = `The lead push API could not be reached (${error.message}).`;
    } finally {
      button.disabled = false;
    }
  }
}

if (!customElements.get("d365-push-button")) customElements.define("d365-push-button", D365PushButton);
if (!customElements.get("d365-replay-button")) customElements.define("d365-replay-button", D365ReplayButton);
