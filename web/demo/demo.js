// The demo page's own code: what Hunter's UI does with its MSAL instance, in a few lines. It signs
// in with the authorization-code flow + PKCE (loginRedirect), gets API tokens silently (refresh
// tokens), and hands the token getter to every <d365-push-button>.
import { D365PushButton } from "/d365-push-button.js"; // defines <d365-push-button> and <d365-replay-button>

const config = await (await fetch("/config.json")).json();
const msalApp = new msal.PublicClientApplication({
  auth: {
    clientId: config.clientId,
    authority: config.authority,
    // The simulator (or a sovereign cloud) is not a host MSAL knows: no instance discovery.
    knownAuthorities: config.knownAuthorities,
    redirectUri: config.redirectUri,
    postLogoutRedirectUri: config.redirectUri,
  },
  cache: { cacheLocation: "sessionStorage" },
});
await msalApp.initialize();
const result = await msalApp.handleRedirectPromise();
const account = result?.account || msalApp.getAllAccounts()[0] || null;
if (account) msalApp.setActiveAccount(account);

async function getToken() {
  const active = msalApp.getActiveAccount();
  if (!active) return null;
  try {
    return (await msalApp.acquireTokenSilent({ scopes: [config.apiScope], account: active })).accessToken;
  } catch (error) {
    console.warn("token", error);
    return null; // the component shows "Sign in to push"
  }
}
D365PushButton.configure({ apiBase: config.apiBase, getToken, pollMs: config.pollMs || 1000 });

document.getElementById("who").textContent = account ? `Signed in as ${account.name} <${account.username}>` : "Not signed in";
document.getElementById("sign-in").hidden = !!account;
document.getElementById("sign-out").hidden = !account;
document.getElementById("sign-in").addEventListener("click", () => msalApp.loginRedirect({ scopes: [config.apiScope] }));
document.getElementById("sign-out").addEventListener("click", () => msalApp.logoutRedirect({ account: msalApp.getActiveAccount() }));

const rows = document.getElementById("leads");
for (const lead of config.leads) {
  const row = document.createElement("tr");
  row.innerHTML = "<td></td><td></td><td></td><td></td>";
  row.cells[0].textContent = lead.company_name;
  row.cells[1].textContent = lead.domain;
  row.cells[1].className = "domain";
  row.cells[1].title = lead.domain;
  row.cells[2].textContent = lead.final_score ?? "";
  const button = document.createElement("d365-push-button");
  button.setAttribute("domain", lead.domain);
  button.lead = lead;
  row.cells[3].append(button);
  rows.append(row);
}
document.body.dataset.ready = "true";
