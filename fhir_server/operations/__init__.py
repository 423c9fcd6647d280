"""FHIR operations: one module each, declared by an OperationDefinition."""
