// A minimal SMART standalone launch in the browser (public client, PKCE S256), as a
// SMART app does it: discovery, authorize, code -> token, then a FHIR read. Every call to
// the FHIR server is cross-origin. The outcome goes into #result as JSON.
"use strict";

const result = document.getElementById("result");

function show(outcome) {
  result.textContent = JSON.stringify(outcome);
}

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(length) {
  return base64url(crypto.getRandomValues(new Uint8Array(length)));
}

async function launch(params) {
  const iss = params.get("iss");
  const discovery = await fetch(`${iss}/.well-known/smart-configuration`);
  const smart = await discovery.json();
  const verifier = randomText(48);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const state = randomText(16);
  const redirectUri = location.origin + location.pathname;
  sessionStorage.setItem("launch", JSON.stringify({
    iss, verifier, state, redirectUri, clientId: params.get("client_id"),
    tokenUrl: smart.token_endpoint,
  }));
  const query = new URLSearchParams({
    response_type: "code", client_id: params.get("client_id"), redirect_uri: redirectUri,
    scope: params.get("scope"), state, aud: iss,
    code_challenge: base64url(digest), code_challenge_method: "S256",
  });
  location.assign(`${smart.authorization_endpoint}?${query}`);
}

async function callback(params) {
  const saved = JSON.parse(sessionStorage.getItem("launch"));
  if (params.get("state") !== saved.state) throw new Error("the state does not match");
  const tokenAnswer = await fetch(saved.tokenUrl, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "authorization_code", code: params.get("code"),
      redirect_uri: saved.redirectUri, code_verifier: saved.verifier, client_id: saved.clientId,
    }),
  });
  const token = await tokenAnswer.json();
  if (!tokenAnswer.ok) throw new Error(`token endpoint: ${token.error}`);
  const read = await fetch(`${saved.iss}/Patient/${token.patient}`, {
    headers: { Authorization: `Bearer ${token.access_token}`, Accept: "application/fhir+json" },
  });
  const patient = await read.json();
  show({
    status: read.status, patient: token.patient, family: patient.name[0].family,
    given: patient.name[0].given, etag: read.headers.get("ETag"),
  });
}

const params = new URLSearchParams(location.search);
(params.has("code") ? callback(params) : launch(params)).catch((error) => show({ error: String(error) }));
