// <d365-push-button domain="acme.example">: push one Hunter lead to Dynamics 365 and show its sync
// badge (queued, syncing, retrying with the next attempt, synced, error with the reason) and an
// "Open in Dynamics" link. One file, no dependencies, no framework; Hunter copies or loads it.
//
// The host page owns sign-in (Hunter has its own MSAL instance) and hands the component a token
// getter and the API's base URL, once for every button or per element:
//
//   D365PushButton.configure({
//     apiBase: "https://func-api-xyz.azurewebsites.net/api",
//     getToken: async () => (await msal.acquireTokenSilent({scopes: [apiScope], account})).accessToken,
//   });
//   <d365-push-button domain="acme.example"></d365-push-button>
//   element.lead = {company_name: "Acme", final_score: 82};   // optional: the fields pushed with the domain
//
// getToken returns null (or throws) when nobody is signed in: the component then asks the person to
// sign in. The API answers 401 without a valid token and 403 when the person lacks the app role
// Leads.Push; both are explained on the badge. Events: `d365-status` (detail: the status body).

const LABELS = {
  not_synced: "Not in Dynamics",
  queued: "Queued",
  syncing: "Syncing…",
  retrying: "Retrying",
  synced: "Synced",
  error: "Error",
  signed_out: "Sign in to push",
  forbidden: "Not allowed",
  unknown: "Unknown",
};
const FINAL = new Set(["synced", "error", "not_synced"]);
const defaults = { apiBase: "/api", getToken: async () => null, pollMs: 2000 };

const STYLE = `
:host { display: inline-flex; align-items: center; gap: .5rem; font: inherit; flex-wrap: wrap; }
button { font: inherit; padding: .25rem .75rem; cursor: pointer; }
button[disabled] { cursor: progress; opacity: .7; }
.badge { border-radius: 999px; padding: .1rem .6rem; font-size: .875em; font-weight: 600; border: 1px solid; }
.badge[data-status="not_synced"], .badge[data-status="unknown"] { color: #444; background: #f2f2f2; }
.badge[data-status="queued"], .badge[data-status="syncing"] { color: #0b4f8a; background: #e3f0fc; }
.badge[data-status="retrying"] { color: #7a4b00; background: #fff2d6; }
.badge[data-status="synced"] { color: #0d5c2e; background: #dff5e7; }
.badge[data-status="error"], .badge[data-status="forbidden"] { color: #8a1111; background: #fde4e4; }
.badge[data-status="signed_out"] { color: #444; background: #fff; border-style: dashed; }
.detail { font-size: .875em; color: #333; }
a { font-size: .875em; }
`;

export class D365PushButton extends HTMLElement {
  static configure(options) {
    Object.assign(defaults, options);
  }

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this.lead = {};
    this._timer = null;
    this._state = { status: "unknown" };
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
    let token = null;
    try {
      token = await this.getToken();
    } catch {
      token = null;
    }
    if (!token) return { status: 401, body: null };
    const response = await fetch(`${this.apiBase}${path}`, {
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
    return { status: response.status, body: data };
  }

  _refused(answer) {
    if (answer.status === 401) {
      this.show({ status: "signed_out", message: "Sign in to push leads to Dynamics." });
      return true;
    }
    if (answer.status === 403) {
      this.show({ status: "forbidden", message: answer.body?.message || "You may not push leads to Dynamics." });
      return true;
    }
    return false;
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
    if (answer.status === 404) {
      this.show({ status: "not_synced" });
      return;
    }
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
    const domain = this.getAttribute("domain");
    this._button().disabled = true;
    try {
      const answer = await this._fetch("POST", "/v1/d365/push-lead", { ...this.lead, domain });
      if (this._refused(answer)) return;
      if (answer.status !== 202) {
        this.show({ status: "error", last_error: answer.body?.message || `HTTP ${answer.status}` });
        return;
      }
      this.show({ ...this._state, status: "queued" });
      await this.refresh();
    } catch (error) {
      this.show({ status: "unknown", message: `The lead push API could not be reached (${error.message}).` });
    } finally {
      this._button().disabled = false;
    }
  }

  _button() {
    return this.shadowRoot.querySelector("button");
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
        <span class="detail" part="detail"></span>
        <a part="link" target="_blank" rel="noopener" hidden>Open in Dynamics</a>`;
      root.querySelector("button").addEventListener("click", () => this.push());
    }
    const domain = this.getAttribute("domain") || "";
    root.querySelector("button").setAttribute("aria-label", `Push ${domain} to Dynamics`);
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
    root.querySelector(".detail").textContent = detail;
    const link = root.querySelector("a");
    if (state.d365_url) {
      link.href = state.d365_url;
      link.hidden = false;
      link.setAttribute("aria-label", `Open ${domain} in Dynamics`);
    } else {
      link.hidden = true;
      link.removeAttribute("href");
    }
    root.host.dataset.status = status;
  }
}

if (!customElements.get("d365-push-button")) customElements.define("d365-push-button", D365PushButton);
