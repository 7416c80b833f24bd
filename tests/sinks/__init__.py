"""Local stand-ins for mail providers: an SMTP server and a SendGrid v3 Mail Send server."""
