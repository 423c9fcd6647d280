"""The revenue cycle's domain, for the clinic and for the payer: the states of Invoice, Claim,
ClaimResponse, PaymentReconciliation and Appointment with their transition tables
(``states``), what a line bills (``amounts``), which Coverage a claim is about
(``coverage``), an Invoice's balance (``balances``), the bill of a visit (``billing``) and
the payer's answers (``payer/``). No HTTP here and no storage details: functions that read
take the Repository they are given."""
