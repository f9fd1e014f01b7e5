// A local OpenID provider for the OIDC browser test: oauth2-mock-server on 127.0.0.1:<port>.
// The signed-in person's claims (email, email_verified, name) are read from the JSON file
// named by OIDC_CLAIMS_FILE each time an ID token is issued, so one provider serves every case.
import { readFileSync } from "node:fs";
import { OAuth2Server } from "oauth2-mock-server";

const port = Number(process.argv[2]);
const claimsFile = process.env.OIDC_CLAIMS_FILE;
const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");
const claims = () => JSON.parse(readFileSync(claimsFile, "utf8"));
server.service.on("beforeTokenSigning", (token) => {
  Object.assign(token.payload, claims());
});
server.service.on("beforeUserinfo", (userInfoResponse) => {
  userInfoResponse.body = { ...userInfoResponse.body, ...claims() };
});
await server.start(port, "127.0.0.1");
console.log(`OIDC provider ready on ${server.issuer.url}`);
