"""What comes back: tokens for links, RSVPs, replies, provider events, suppression."""
