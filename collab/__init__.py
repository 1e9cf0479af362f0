"""Real-time collaboration: operational transform and document sessions."""
