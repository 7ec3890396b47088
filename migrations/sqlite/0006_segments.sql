-- SMS segments a notice took (GSM-7: 160/153 characters, UCS-2: 70/67), for cost reports.
ALTER TABLE notices ADD COLUMN segments INTEGER;
