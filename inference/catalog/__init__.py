"""Model catalog and provider health records (public schema)."""
