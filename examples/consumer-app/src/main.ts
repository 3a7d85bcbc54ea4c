import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

const app = await NestFactory.create(AppModule);
// SIGTERM: consumers stop taking messages, in-flight ones finish, then the connections close
app.enableShutdownHooks();
await app.listen(Number(process.env.PORT ?? 3000));
