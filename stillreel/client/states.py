"""fal's request states and the error type of a cancelled request (imported by every client module)."""

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
CANCELLED_ERROR_TYPE = "request_cancelled"
