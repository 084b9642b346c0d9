"""The local stack: a Dataverse/Entra ID/Key Vault/managed-identity simulator, a local Functions
host, and the commands that start them with Azurite. Development and test tooling only; never
deployed."""
