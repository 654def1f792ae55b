"""What a job costs: the studio's prices, the estimate from the scouts and the hours a job took."""
