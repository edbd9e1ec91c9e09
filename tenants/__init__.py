"""Tenants: the Tenant and Domain models, tenant policy, encrypted credentials and provisioning."""
