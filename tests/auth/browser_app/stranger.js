// A page on an origin that no client registered, holding a valid access token: each call
// reports the status it could read, or the name of the error fetch rejected with.
"use strict";

async function attempt(call) {
  try {
    return `read ${(await call()).status}`;
  } catch (error) {
    return error.name;
  }
}

async function main() {
  const params = new URLSearchParams(location.search);
  const iss = params.get("iss");
  const auth = { Authorization: `Bearer ${params.get("token")}` };
  const outcome = {
    own: await attempt(() => fetch("stranger.html")),
    discovery: await attempt(() => fetch(`${iss}/.well-known/smart-configuration`)),
    read: await attempt(() => fetch(`${iss}/Patient/${params.get("patient")}`, { headers: auth })),
  };
  document.getElementById("result").textContent = JSON.stringify(outcome);
}

main();
